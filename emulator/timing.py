"""The fast timing model: closed-form cycle costs computed beside functional execution.

docs/timing.md states the machine model these formulas follow; the
cycle-level mode (cycle_model.py) steps that same model one cycle at a time
and is what they are checked against. In short:

* the core issues one instruction at a time: ``issue`` cycles plus its work,
  ``ceil(n / vector_lanes)`` for an n-element vector op, ``n * special`` for
  div, sqrt, exp and tanh, ``ceil(M*N*K / fmac_lanes)`` for mmac;
* a transfer is a stream of one wavelet per cycle. Its first wavelet reaches
  a receiver ``2 * ramp + hops * link`` cycles after it is injected
  (cut-through: nothing waits for the whole message);
* a receiver takes one wavelet per cycle from its queue;
* the fabric holds at most ``queue_depth + (hops + 1) * router_buffer``
  wavelets of a stream that the receiver has not yet taken: beyond that the
  sender waits (back-pressure) until the receiver frees space;
* a link that several streams use in the same fabric phase is shared
  round-robin, so each goes at 1/k of the rate.

The packed parameter vector comes from MachineConfig.timing_vector().
"""
from numba import njit

(T_ISSUE, T_VECTOR_LANES, T_FMAC_LANES, T_LINK, T_RAMP, T_SPECIAL, T_ROUTER_BUFFER,
 T_QUEUE, T_DETAIL) = range(9)
# T_DETAIL 0 (--timing off) skips the per-statement accounting and the link-sharing
# analysis; clocks still advance, so benchmarks can measure what the detail costs.


@njit(cache=True, inline="always")
def vector_cycles(timing, n):
    return timing[T_ISSUE] + (n + timing[T_VECTOR_LANES] - 1) // timing[T_VECTOR_LANES]


@njit(cache=True, inline="always")
def special_cycles(timing, n):
    """div, sqrt, exp and tanh: a multi-cycle routine per element."""
    return timing[T_ISSUE] + n * timing[T_SPECIAL]


@njit(cache=True, inline="always")
def mmac_cycles(timing, m, n, k):
    work = m * n * k
    return timing[T_ISSUE] + (work + timing[T_FMAC_LANES] - 1) // timing[T_FMAC_LANES]


@njit(cache=True, inline="always")
def stream_latency(timing, hops):
    """Cycles from a wavelet's injection to its landing in a receiver's queue."""
    return 2 * timing[T_RAMP] + hops * timing[T_LINK]


@njit(cache=True, inline="always")
def link_offset(timing, hop):
    """Cycles from injection until a wavelet crosses the link leaving hop `hop`."""
    return timing[T_RAMP] + hop * timing[T_LINK]


@njit(cache=True, inline="always")
def fabric_capacity(timing, hops):
    """Wavelets of one stream the fabric holds before the receiver takes any:
    its queue plus one router buffer at each router on the path."""
    return timing[T_QUEUE] + (hops + 1) * timing[T_ROUTER_BUFFER]


@njit(cache=True, inline="always")
def backpressure_delay(timing, hops):
    """Cycles from a receiver freeing a queue slot to the sender injecting into it:
    room travels back one router per cycle (a link or ramp reserves the next
    buffer when it takes a wavelet), whatever the latencies."""
    return hops + 2
