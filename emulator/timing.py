"""The timing model: cycle costs kept alongside functional execution.

Every tile carries its own clock. The functional schedule (the order in which
the emulator happens to run tiles) never changes a value; the clocks follow
the dataflow instead:

* an instruction costs ``issue`` cycles plus its work: ``ceil(n / vector_lanes)``
  for an n-element vector op, ``n * special_cycles`` for div, sqrt, exp and
  tanh, ``ceil(M*N*K / fmac_lanes)`` for mmac;
* a transfer chunk of n wavelets starts when the sender, every receiver that is
  waiting for it, and every link on its path are free; it occupies the sender
  and each link for ``ceil(n / bandwidth)`` cycles, and reaches a receiver
  ``hops * link_latency`` cycles after it leaves;
* a receive from the ramp queue costs one cycle per wavelet and cannot finish
  before the data has arrived.

It is an estimate, not a cycle-by-cycle router simulation: links are reserved
in the order the emulator matches transfers, not by per-cycle arbitration.
The packed parameter vector comes from MachineConfig.timing_vector().
"""
from numba import njit

T_ISSUE, T_VECTOR_LANES, T_FMAC_LANES, T_HOP, T_BANDWIDTH, T_SPECIAL = 0, 1, 2, 3, 4, 5


@njit(cache=True)
def vector_cycles(timing, n):
    return timing[T_ISSUE] + (n + timing[T_VECTOR_LANES] - 1) // timing[T_VECTOR_LANES]


@njit(cache=True)
def special_cycles(timing, n):
    """div, sqrt, exp and tanh: a multi-cycle routine per element."""
    return timing[T_ISSUE] + n * timing[T_SPECIAL]


@njit(cache=True)
def mmac_cycles(timing, m, n, k):
    work = m * n * k
    return timing[T_ISSUE] + (work + timing[T_FMAC_LANES] - 1) // timing[T_FMAC_LANES]


@njit(cache=True)
def wire_cycles(timing, words):
    return (words + timing[T_BANDWIDTH] - 1) // timing[T_BANDWIDTH]


@njit(cache=True)
def hop_cycles(timing, hops):
    return hops * timing[T_HOP]
