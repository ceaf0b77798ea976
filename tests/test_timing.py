"""The fast timing model against closed forms derived by hand from docs/timing.md.

Each program below is written so that its timing can be worked out on paper;
the derivation is in the test's comment, in terms of the machine's named
constants (issue, ramp, link, router_buffer B, queue_depth Q), and every test
runs on more than one machine so that a constant cannot be right by accident.
Where the cycle-level model is available the same programs are also run there
(test_fast_equals_cycle_level_on_micro_benchmarks).
"""
import numpy as np
import pytest

from conftest import build_program
from tilegrid.compiler.passes.route_streams import pattern_routes
from tilegrid.emulator import Emulator, MachineConfig, isa
from tilegrid.emulator.isa import descriptor as D, instr as I
from tilegrid.emulator.trace_events import EV_RECV, EV_SEND

MACHINES = [MachineConfig(width=2, height=1),
            MachineConfig(width=2, height=1, link_latency=3, ramp_latency=2, issue_cycles=2, router_buffer=4)]


def lat(cfg, hops):
    return 2 * cfg.ramp_latency + hops * cfg.link_latency


def machine_for(cfg, width, height=1):
    return MachineConfig(**{**cfg.to_dict(), "width": width, "height": height})


def run(cfg, code, descs, routes, sram=512, trace=True):
    prog = build_program(cfg.width, cfg.height, code, descs, sram, routes=routes, config=cfg)
    emu = Emulator(prog, trace_tiles=range(cfg.tiles) if trace else None)
    stats = emu.run()
    return emu, stats


def streams(stats, kind):
    """{tile: (start, end)} of the trace's streams of one kind."""
    ev = stats.events
    return {int(e[0]): (int(e[2]), int(e[3])) for e in ev[ev[:, 1] == kind]}


def east_routes(width, colors=1):
    r = pattern_routes("east", width, 1)
    return np.repeat(r[:, None, :], colors, axis=1)


# tile 0 sends L words east, tile 1 receives; both branch on r0 (x) first
def one_hop_program(L):
    code = [I(isa.BNE, 0, 2, 3),          # r2 = 0: tile 0 falls through, tile 1 jumps
            I(isa.SEND, 0, 0), I(isa.HALT),
            I(isa.RECV, 0, 1), I(isa.HALT)]
    return code, [D(0, [(L, 1)]), D(L, [(L, 1)])]


@pytest.mark.parametrize("cfg", MACHINES)
@pytest.mark.parametrize("L", [1, 7, 64, 300])
def test_one_hop_stream(cfg, L):
    # Both streams start after the branch, at s = r = issue. The first wavelet
    # lands lat(1) later and the rest follow one per cycle, so the receive
    # completes at issue + lat(1) + L, the sender at issue + L; halt adds issue.
    code, descs = one_hop_program(L)
    emu, stats = run(cfg, code, descs, east_routes(2), sram=2 * L)
    i = cfg.issue_cycles
    assert streams(stats, EV_RECV)[1] == (i, i + lat(cfg, 1) + L)
    assert streams(stats, EV_SEND)[0] == (i, i + L)
    assert stats.per_tile_cycles.tolist() == [max(2 * i, i + L) + i, i + lat(cfg, 1) + L + i]
    assert stats.cycles == 2 * i + lat(cfg, 1) + L


@pytest.mark.parametrize("cfg", MACHINES)
@pytest.mark.parametrize("W", [2, 5, 9])
def test_row_multicast_is_cut_through(cfg, W):
    # Tile 0 multicasts L words along the row (route W->E+RAMP): the tile h hops
    # away has its last wavelet at issue + lat(h) + L, so the row finishes at
    # L + (W - 1) * link + 2 * ramp + 2 * issue: L + W - 1 plus a constant.
    L = 40
    cfg = machine_for(cfg, W)
    routes = pattern_routes("row_bcast", W, 1)[:, None, :]
    code, descs = one_hop_program(L)
    emu, stats = run(cfg, code, descs, routes)
    i = cfg.issue_cycles
    recvs = streams(stats, EV_RECV)
    for h in range(1, W):
        assert recvs[h] == (i, i + lat(cfg, h) + L)
    assert stats.cycles == L + (W - 1) * cfg.link_latency + 2 * cfg.ramp_latency + 2 * i


@pytest.mark.parametrize("cfg", MACHINES)
def test_send_and_receive_overlap_with_async_slots(cfg):
    # A ring of W tiles: each starts a send east on slot 0 (sendx), receives
    # from the west, then waits for its send. Sends and receives run in the same
    # cycles: the receive completes at issue + lat(1) + L (not 2L).
    W, L = 4, 50
    cfg = machine_for(cfg, W)
    routes = pattern_routes("east_ring", W, 1)[:, None, :]
    code = [I(isa.SENDX, 0, 0, 0), I(isa.RECV, 0, 1), I(isa.WAIT, 0), I(isa.HALT)]
    emu, stats = run(cfg, code, [D(0, [(L, 1)]), D(L, [(L, 1)])], routes)
    i = cfg.issue_cycles
    for t in range(W):
        # the ring's wrap-around link crosses W - 1 hops back west
        hops = W - 1 if t == 0 else 1
        assert streams(stats, EV_RECV)[t] == (i, max(i, lat(cfg, hops)) + L)
    assert stats.cycles == max(i, lat(cfg, W - 1)) + L + 2 * i


@pytest.mark.parametrize("cfg", MACHINES)
def test_two_streams_sharing_one_link_take_twice_as_long(cfg):
    # Tile 0 starts two L-word streams to tile 1, color 0 at s0 = issue and
    # color 1 at s1 = 2 * issue, over the one east link (hop 0). They reach the
    # link at a0 = s0 + ramp and a1 = s1 + ramp. Color 0 crosses alone until a1;
    # from a1 the link alternates, the later arrival first: color 1 crosses at
    # a1 + 2j, color 0's wavelet k >= issue at a1 + 1 + 2(k - issue). A wavelet
    # is in the queue ramp + link after it crosses; the receives end a cycle
    # after their last take.
    L = 60
    code = [I(isa.BNE, 0, 2, 6),
            I(isa.SENDX, 0, 0, 0), I(isa.SENDX, 1, 1, 1), I(isa.WAIT, 0), I(isa.WAIT, 1), I(isa.HALT),
            I(isa.RECVX, 0, 2, 0), I(isa.RECVX, 1, 3, 1), I(isa.WAIT, 0), I(isa.WAIT, 1), I(isa.HALT)]
    descs = [D(0, [(L, 1)]), D(L, [(L, 1)]), D(2 * L, [(L, 1)]), D(3 * L, [(L, 1)])]
    emu, stats = run(cfg, code, descs, east_routes(2, colors=2))
    i, ramp, link = cfg.issue_cycles, cfg.ramp_latency, cfg.link_latency
    ev = stats.events
    recv = {int(e[4]) % 256: int(e[3]) for e in ev[ev[:, 1] == EV_RECV]}
    a1 = 2 * i + ramp
    last0 = a1 + 1 + 2 * (L - 1 - i)
    last1 = a1 + 2 * (L - 1)
    assert recv[0] == max(i + L, last0 + ramp + link + 1)
    assert recv[1] == max(2 * i + L, last1 + ramp + link + 1)
    alone = lat(cfg, 1) + L
    for c, start in ((0, i), (1, 2 * i)):
        assert recv[c] - start >= 2 * L - 2 * i and recv[c] - start > alone + L // 2  # about twice as long


@pytest.mark.parametrize("cfg", MACHINES)
@pytest.mark.parametrize("L", [60, 200])
def test_late_receiver_holds_the_sender_back(cfg, L):
    # Tile 1 first fills N words (issue + N cycles) and only then receives, at
    # r = 2 * issue + N. The fabric holds D = Q + 2 * B wavelets for it (queue
    # and two routers), so the sender's last injection waits for the receiver:
    # the send completes at r + L - D + K, K = hops + 2 = 3 cycles from a freed
    # slot to the next injection (room moves back a router per cycle), and the
    # receive at r + L.
    N = 1000
    code = [I(isa.BNE, 0, 2, 3),
            I(isa.SEND, 0, 0), I(isa.HALT),
            I(isa.VFILL, 2, 0), I(isa.RECV, 0, 1), I(isa.HALT)]
    descs = [D(0, [(L, 1)]), D(L, [(L, 1)]), D(2 * L, [(N, 1)])]
    emu, stats = run(cfg, code, descs, east_routes(2), sram=2 * L + N)
    i = cfg.issue_cycles
    r = 2 * i + N
    D_ = cfg.queue_depth + 2 * cfg.router_buffer
    K = 1 + 2
    assert streams(stats, EV_SEND)[0] == (i, max(i + L, r + L - D_ + K))
    assert streams(stats, EV_RECV)[1] == (r, r + L)
    held = stats.events[stats.events[:, 1] == 6]  # EV_BACKPRESSURE: visible in the trace, naming tile 1
    assert len(held) == 1 and int(held[0, 5]) == 1


def test_blocked_time_and_busy_time_add_up():
    # Every core cycle of a tile is compute, scalar work or waiting: the trace's
    # core spans tile [0, cycles) exactly.
    cfg = MACHINES[0]
    code, descs = one_hop_program(32)
    emu, stats = run(cfg, code, descs, east_routes(2))
    ev = stats.events
    for t in range(2):
        core = ev[(ev[:, 0] == t) & (ev[:, 1] <= 3)]
        assert int((core[:, 3] - core[:, 2]).sum()) == stats.per_tile_cycles[t]
    assert stats.per_tile_blocked[1] == stats.per_tile_cycles[1] - 3 * cfg.issue_cycles


def test_seconds_follow_the_clock():
    cfg = MachineConfig(width=2, height=1, clock_mhz=1100)
    code, descs = one_hop_program(100)
    _, stats = run(cfg, code, descs, east_routes(2), trace=False)
    assert stats.seconds == pytest.approx(stats.cycles / 1.1e9)
    assert stats.clock_mhz == 1100


@pytest.mark.parametrize("cfg", MACHINES)
@pytest.mark.parametrize("W", [2, 4, 7])
def test_chain_reduce(cfg, W):
    # acc(x) = acc(x - 1) + src(x) along the row, with blocking send/recv:
    # tile 0 sends at s0 = issue; a middle tile receives (posted at 3 * issue,
    # before anything can land), adds (issue + L) and sends on, so
    # s(x) = s(x - 1) + lat(1) + L + issue + L. The last tile receives, adds
    # and halts: cycles = (W - 1) * (lat(1) + 2L + issue) + 2 * issue.
    L = 48
    cfg = machine_for(cfg, W)
    code = [I(isa.BEQ, 0, 2, 7), I(isa.LI, 3, W - 1), I(isa.BEQ, 0, 3, 9),
            I(isa.RECV, 0, 1), I(isa.VADD, 1, 1, 0), I(isa.SEND, 0, 1), I(isa.HALT),
            I(isa.SEND, 0, 0), I(isa.HALT),
            I(isa.RECV, 0, 1), I(isa.VADD, 1, 1, 0), I(isa.HALT)]
    descs = [D(0, [(L, 1)]), D(L, [(L, 1)])]
    routes = east_routes(W)
    emu, stats = run(cfg, code, descs, routes, sram=2 * L)
    i = cfg.issue_cycles
    assert stats.cycles == (W - 1) * (lat(cfg, 1) + 2 * L + i) + 2 * i


# The DSL collectives as compiled (defaults: issue = ramp = link = 1), from
# their instruction paths (`tilegrid compile --emit asm`):
#   shift:  li, beq, sendx at 2; li, beq, recv at 5; the west neighbour's first
#           wavelet lands at 2 + lat(1) = 5; recv done at 5 + L; li, beq, wait,
#           halt: L + 9.
#   rotate: sendx at 0, recv at 1; tile 0's data comes W - 1 hops round the
#           ring: done at lat(W - 1) + L; wait, halt: L + 2 + (W - 1) + 2.
#   broadcast_row / broadcast_col from 0: li, bne, recv at 2; the root's sendx
#           at 2 lands h hops away at 2 + 2 + h: done at 4 + h + L, halt:
#           L + W + 4, that is L + W - 1 plus 5.
DSL_CLOSED_FORMS = {
    "shift(A, east)": (lambda W, L: L + 9, "row"),
    "rotate(A, east)": (lambda W, L: L + 2 + (W - 1) + 2, "row"),
    "broadcast_row(A, from = 0)": (lambda W, L: L + W + 4, "row"),
    "broadcast_col(A, from = 0)": (lambda W, L: L + W + 4, "col"),
    "shift(A, south)": (lambda W, L: L + 9, "col"),
    "rotate(A, south)": (lambda W, L: L + 2 + (W - 1) + 2, "col"),
}


@pytest.mark.parametrize("expr", list(DSL_CLOSED_FORMS))
@pytest.mark.parametrize("W,L", [(4, 64), (8, 256), (16, 32)])
def test_dsl_collectives_meet_their_closed_forms_in_both_models(tmp_path, expr, W, L):
    from tilegrid import api
    formula, axis = DSL_CLOSED_FORMS[expr]
    dist, grid = ("x", (W, 1)) if axis == "row" else ("y", (1, W))
    path = tmp_path / "k.tg"
    path.write_text(f"kernel k(A: f32[N] block({dist})) -> B: f32[N] block({dist}) {{ B = {expr} }}")
    program = api.compile_kernel(str(path), grid, {"A": (W * L,)}).program
    emu = Emulator(program, timing="cycle")
    emu.load_inputs({"A": np.arange(W * L, dtype=np.float32)})
    stats = emu.run()
    assert stats.fast_cycles == formula(W, L)
    assert stats.cycles == formula(W, L)  # the cycle-level model
