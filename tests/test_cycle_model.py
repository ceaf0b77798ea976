"""The cycle-level timing model (emulator/cycle_model.py) against closed forms.

Every expected cycle count here is derived by hand from the rules of
docs/timing.md ("The machine model"); the derivation is in the comment next
to it. Notation: ramp = ramp_latency, link = link_latency, B = router_buffer,
Q = queue_depth, L = wavelets of a stream, s / r = cycle a send / receive
stream starts, h = hops. A program's `halt` issues when the instruction
before it and the tile's streams are complete, and adds issue_cycles (1
unless stated), so a tile's cycles are its last completion + 1.

Facts used again and again (defaults ramp = link = 1, B = 2, Q = 8):
* injected at t, a wavelet holds its router slot from t and is there at
  t + ramp; if it goes on at once over a link it leaves that router at the end
  of t + ramp, so a source-router slot is busy ramp + 1 cycles and B slots keep
  injection at one per cycle when B >= ramp + 1; a link hop likewise needs
  B >= link + 1. Every full-rate case below keeps B >= max(ramp, link) + 1.
* a wavelet at the last router at t is delivered to the RAMP at t (queue
  room) and is in the queue at t + ramp, where a waiting receiver takes it.
* a router has a buffer of B per (color, input port): a tile's injections wait
  in its RAMP buffer, a wavelet that came over a link in the buffer of the side
  it came in from. Streams of one color entering a router from different sides
  never wait for each other's room or behind each other's wavelets.
"""
import numpy as np
import pytest

from tilegrid.api import compile_kernel
from tilegrid.emulator import CodeRegion, Emulator, MachineConfig, Program, isa
from tilegrid.emulator.cycle_model import CycleLevelError, CycleState, run_cycle_level, run_state
from tilegrid.emulator.isa import descriptor as D, instr as I
from tilegrid.kernels import BUNDLED

DIRECTION = {(0, -1): isa.PORT_N, (1, 0): isa.PORT_E, (0, 1): isa.PORT_S, (-1, 0): isa.PORT_W}
BRANCH_FIELD = {op: kinds.index("t") + 1 for op, kinds in isa.OPERANDS.items() if "t" in kinds}


# ------------------------------------------------------------------ helpers
def grid_program(cfg, per_tile, descs, routes=None, sram_words=4096, fimm=(0.0,)):
    """One code region per tile: per_tile maps (x, y) to that tile's code, with branch
    targets relative to its own first instruction. Tiles not listed have no code."""
    code, regions = [], []
    for (x, y), rows in per_tile.items():
        start = len(code)
        for row in rows:
            row = list(row)
            if row[0] in BRANCH_FIELD:
                row[BRANCH_FIELD[row[0]]] += start
            code.append(row)
        regions.append(CodeRegion(f"t{x}_{y}", start, len(code), x, y, x + 1, y + 1))
    if routes is None:
        routes = np.zeros((cfg.tiles, 0, 5), np.uint8)
    return Program(cfg, np.array(code, np.int32), np.array(descs, np.int32), np.array(fimm, np.float32),
                   regions, np.asarray(routes, np.uint8), sram_words)


def add_path(routes, width, color, path, deliver_on_the_way=False):
    """Route color along path [(x, y), ...] of neighbouring tiles: the first tile
    injects, the last delivers (so do the ones between when deliver_on_the_way)."""
    tile = lambda p: p[1] * width + p[0]  # noqa: E731
    port_in = isa.PORT_RAMP
    for here, there in zip(path, path[1:]):
        out = DIRECTION[(there[0] - here[0], there[1] - here[1])]
        routes[tile(here), color, port_in] |= 1 << out
        if deliver_on_the_way and port_in != isa.PORT_RAMP:
            routes[tile(here), color, port_in] |= 1 << isa.PORT_RAMP
        port_in = isa.OPPOSITE[out]
    routes[tile(path[-1]), color, port_in] |= 1 << isa.PORT_RAMP
    return routes


def row_stream(hops, L, cfg=None, receiver=None, fill=1):
    """Tile (0,0) sends L wavelets (descriptor 0) east to tile (hops,0) on color 0, the
    tiles between forwarding; descriptor 1 is `fill` words for the receiver's own work."""
    cfg = cfg or MachineConfig(width=hops + 1, height=1)
    routes = add_path(np.zeros((cfg.tiles, 1, 5), np.uint8), cfg.width, 0, [(x, 0) for x in range(hops + 1)])
    per_tile = {(0, 0): [I(isa.SEND, 0, 0), I(isa.HALT)],
                (hops, 0): receiver or [I(isa.RECV, 0, 0), I(isa.HALT)]}
    return grid_program(cfg, per_tile, [D(0, [(L, 1)]), D(1000, [(fill, 1)])], routes)


def functional_icount(program):
    emu = Emulator(program)
    emu.run()
    return emu.state.icount.copy()


# --------------------------------------------------------------- the core
def test_scalar_vector_and_mmac_costs():
    # One tile, issue_cycles = 2, vector_lanes = 3, fmac_lanes = 4, special_cycles = 5:
    #   li, li                          2 instructions            4 cycles
    #   loop body addi + loop, 5 times  10 instructions          20
    #   vfill n = 7:   2 + ceil(7 / 3)      = 5                   5  (busy 3)
    #   vdiv  n = 7:   2 + 7 * 5            = 37                 37  (busy 35)
    #   mmac 3x5x6:    2 + ceil(90 / 4)     = 25                 25  (busy 23)
    #   halt                                                      2
    # cycles = 4 + 20 + 5 + 37 + 25 + 2 = 93, busy = 61, instructions 16
    cfg = MachineConfig(width=1, height=1, issue_cycles=2, vector_lanes=3, fmac_lanes=4, special_cycles=5)
    descs = [D(0, [(7, 1)]), D(100, [(3, 5), (5, 1)]), D(200, [(3, 6), (6, 1)]), D(300, [(6, 5), (5, 1)])]
    code = [I(isa.LI, 2, 0), I(isa.LI, 3, 0),
            I(isa.ADDI, 3, 3, 2), I(isa.LOOP, 2, 5, 2),
            I(isa.VFILL, 0, 0), I(isa.VDIV, 0, 0, 0), I(isa.MMAC, 1, 2, 3), I(isa.HALT)]
    prog = grid_program(cfg, {(0, 0): code}, descs)
    res = run_cycle_level(prog)
    assert res.cycles == 93
    assert res.per_tile_busy.tolist() == [61]
    assert res.per_tile_instructions.tolist() == [16]
    np.testing.assert_array_equal(res.per_tile_instructions, functional_icount(prog))


def test_integer_semantics_steer_control_flow_like_the_functional_core():
    # Floor division and modulo with negative operands decide three branches, and r0
    # (the tile's x) a fourth: divi(-7, 2) = -4 (truncation: -3), modi(-7, 3) = 2
    # (truncation: -1), div(7, -2) = -4 (truncation: -3). With floor semantics:
    code = [I(isa.LI, 2, -7), I(isa.DIVI, 3, 2, 2), I(isa.LI, 4, -4), I(isa.BEQ, 3, 4, 6),  # 0-3: taken
            I(isa.ADDI, 9, 9, 1), I(isa.ADDI, 9, 9, 1),                       # 4, 5: skipped
            I(isa.MODI, 3, 2, 3), I(isa.LI, 4, 2), I(isa.BNE, 3, 4, 11),       # 6-8: not taken
            I(isa.ADDI, 9, 9, 1), I(isa.ADDI, 9, 9, 1),                       # 9, 10: run
            I(isa.LI, 5, 7), I(isa.LI, 6, -2), I(isa.DIV, 3, 5, 6), I(isa.MOD, 7, 5, 6),  # 11-14
            I(isa.LI, 4, -4), I(isa.BNE, 3, 4, 21),                            # 15, 16: not taken
            I(isa.LI, 8, 1), I(isa.BEQ, 0, 8, 21),                             # 17, 18: x == 1 jumps
            I(isa.ADDI, 9, 9, 1), I(isa.ADDI, 9, 9, 1),                       # 19, 20
            I(isa.HALT)]                                                       # 21
    # tile (1,0): 0-3, 6-18, 21 = 4 + 13 + 1 = 18 instructions, 18 cycles
    # tile (0,0): 0-3, 6-21     = 4 + 16     = 20 instructions, 20 cycles
    cfg = MachineConfig(width=2, height=1)
    prog = grid_program(cfg, {(0, 0): code, (1, 0): code}, [D(0, [(1, 1)])])
    res = run_cycle_level(prog)
    assert res.per_tile_instructions.tolist() == [20, 18]
    assert res.per_tile_cycles.tolist() == [20, 18]
    np.testing.assert_array_equal(res.per_tile_instructions, functional_icount(prog))


def test_tiles_without_code_take_no_cycles():
    cfg = MachineConfig(width=3, height=1)
    prog = grid_program(cfg, {(1, 0): [I(isa.LI, 2, 1), I(isa.HALT)]}, [D(0, [(1, 1)])])
    res = run_cycle_level(prog)
    assert res.per_tile_cycles.tolist() == [0, 2, 0]
    assert res.cycles == 2


# ---------------------------------------------------------------- streams
@pytest.mark.parametrize("ramp,link,B", [(1, 1, 2), (2, 1, 3), (1, 3, 4), (3, 2, 4)])
def test_one_hop_stream(ramp, link, B):
    # Send starts at s = 0 and injects wavelet i at i (B >= ramp + 1 keeps room);
    # wavelet i is at the sender's router at i + ramp, crosses the link then, is at
    # the receiver's router at i + ramp + link, in its queue at i + 2 ramp + link and
    # taken then. Receiver completes at s + 2 ramp + link + L; halt adds 1.
    # The send completes the cycle after its last injection, L; halt adds 1.
    L = 10
    cfg = MachineConfig(width=2, height=1, ramp_latency=ramp, link_latency=link, router_buffer=B)
    res = run_cycle_level(row_stream(1, L, cfg))
    assert res.per_tile_cycles.tolist() == [L + 1, 2 * ramp + link + L + 1]
    assert res.link_wavelets[0].tolist() == [0, L, 0, 0]
    assert res.link_wavelets[1].tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("hops", [2, 3, 5])
@pytest.mark.parametrize("ramp,link,B", [(1, 1, 2), (2, 3, 4)])
def test_h_hop_stream(hops, ramp, link, B):
    # As one hop, with h links: the first wavelet is in the queue at 2 ramp + h link,
    # receiver completes at s + 2 ramp + h link + L; every link carries L.
    L = 12
    cfg = MachineConfig(width=hops + 1, height=1, ramp_latency=ramp, link_latency=link, router_buffer=B)
    res = run_cycle_level(row_stream(hops, L, cfg))
    assert res.per_tile_cycles[0] == L + 1
    assert res.per_tile_cycles[hops] == 2 * ramp + hops * link + L + 1
    assert res.link_wavelets[:hops, isa.PORT_E].tolist() == [L] * hops


def test_multicast_along_a_line():
    # Tile (0,0) sends to (1,0) and (2,0); (1,0) both delivers and forwards each wavelet
    # (two outputs of one router, taken independently in the same cycle). Receivers at
    # h = 1 and h = 2 complete at 2 ramp + h link + L: 3 + L and 4 + L; halt adds 1.
    L = 9
    cfg = MachineConfig(width=3, height=1)
    routes = add_path(np.zeros((3, 1, 5), np.uint8), 3, 0, [(0, 0), (1, 0), (2, 0)], deliver_on_the_way=True)
    recv = [I(isa.RECV, 0, 0), I(isa.HALT)]
    prog = grid_program(cfg, {(0, 0): [I(isa.SEND, 0, 0), I(isa.HALT)], (1, 0): recv, (2, 0): recv},
                        [D(0, [(L, 1)])], routes)
    res = run_cycle_level(prog)
    assert res.per_tile_cycles.tolist() == [L + 1, L + 4, L + 5]
    assert res.link_wavelets[:2, isa.PORT_E].tolist() == [L, L]
    np.testing.assert_array_equal(res.per_tile_instructions, functional_icount(prog))


def test_multicast_fork_to_three_neighbours():
    # Tile (1,0) injects once per wavelet; its router sends each to W, E and S in the
    # same cycle (three links, no sharing). All three receivers are one hop away and
    # complete at 2 ramp + link + L = L + 3; halt adds 1.
    L = 7
    cfg = MachineConfig(width=3, height=2)
    routes = np.zeros((6, 1, 5), np.uint8)
    for far in [(0, 0), (2, 0), (1, 1)]:
        add_path(routes, 3, 0, [(1, 0), far])
    recv = [I(isa.RECV, 0, 0), I(isa.HALT)]
    prog = grid_program(cfg, {(1, 0): [I(isa.SEND, 0, 0), I(isa.HALT)], (0, 0): recv, (2, 0): recv,
                              (1, 1): recv}, [D(0, [(L, 1)])], routes)
    res = run_cycle_level(prog)
    assert res.per_tile_cycles.reshape(2, 3).tolist() == [[L + 4, L + 1, L + 4], [0, L + 4, 0]]
    assert res.link_wavelets[1].tolist() == [0, L, L, L]  # N, E, S, W of tile (1,0)


# -------------------------------------------------------------- round-robin
def test_two_colors_from_one_tile_share_a_link_round_robin():
    # Tile (0,0): sendx color 0 on slot 0 at cycle 0, sendx color 1 on slot 1 at 1,
    # wait 0, wait 1, halt. Tile (1,0): recvx color 0 slot 0 at 0, recvx color 1
    # slot 1 at 1, wait 0, wait 1, halt. Both colors use link (0,0)->E.
    # Cycle 1: only color 0 has a wavelet at the router (injected 0, there at 1):
    # granted. Cycle 2: both; round-robin starts after color 0: color 1. Cycle 3:
    # after color 1 wraps to color 0, and so on: color 0's wavelet i crosses at
    # 1 + 2i, color 1's at 2 + 2i, each one every 2 cycles.
    # Receiver: color 0's wavelet i in the queue at 1 + 2i + link + ramp = 3 + 2i,
    # complete at 3 + 2(L-1) + 1 = 2L + 2; color 1's at 2L + 3. wait 0 (issued 2)
    # goes on at 2L + 2, wait 1 at max(2L + 3, 2L + 3), halt: 2L + 4.
    # Sender: color 0 injects 0, 1, 2 (slots free at the ends of 1 and 3...), then
    # wavelet i >= 2 when wavelet i - 2 has crossed, at 2i - 2: complete at 2L - 3;
    # color 1 injects 1, 2, 3, then i >= 2 at 2i - 1: complete at 2L - 2.
    # wait 0 (issued 2) goes on at 2L - 3, wait 1 at max(2L - 2, 2L - 2), halt: 2L - 1.
    L = 10
    cfg = MachineConfig(width=2, height=1)
    routes = np.zeros((2, 2, 5), np.uint8)
    for color in (0, 1):
        add_path(routes, 2, color, [(0, 0), (1, 0)])
    sender = [I(isa.SENDX, 0, 0, 0), I(isa.SENDX, 1, 1, 1), I(isa.WAIT, 0), I(isa.WAIT, 1), I(isa.HALT)]
    receiver = [I(isa.RECVX, 0, 0, 0), I(isa.RECVX, 1, 1, 1), I(isa.WAIT, 0), I(isa.WAIT, 1), I(isa.HALT)]
    prog = grid_program(cfg, {(0, 0): sender, (1, 0): receiver}, [D(0, [(L, 1)]), D(100, [(L, 1)])], routes)
    res = run_cycle_level(prog)
    assert res.per_tile_cycles.tolist() == [2 * L - 1, 2 * L + 4]
    assert res.link_wavelets[0, isa.PORT_E] == 2 * L


def test_three_colors_share_a_link_one_wavelet_every_three_cycles():
    # Three sendx on colors 0, 1, 2 issued at 0, 1, 2, each to the east neighbour.
    # Grants: cycle 1 color 0 (alone), 2 color 1 (after 0), 3 color 2 (after 1), 4
    # color 0 (wraps), ...: color k's wavelet i crosses at k + 1 + 3i, is in the
    # queue at k + 3 + 3i and taken (its recvx started at k <= that): color k's
    # receive completes at 3L + k + 1. Receiver: recvx at 0, 1, 2; wait 0 (issued 3)
    # goes on at 3L + 1, wait 1 at 3L + 2, wait 2 at 3L + 3, halt: 3L + 4.
    L = 8
    cfg = MachineConfig(width=2, height=1)
    routes = np.zeros((2, 3, 5), np.uint8)
    for color in range(3):
        add_path(routes, 2, color, [(0, 0), (1, 0)])
    sender = [I(isa.SENDX, k, k, k) for k in range(3)] + [I(isa.WAIT, k) for k in range(3)] + [I(isa.HALT)]
    receiver = [I(isa.RECVX, k, 3 + k, k) for k in range(3)] + [I(isa.WAIT, k) for k in range(3)] + [I(isa.HALT)]
    descs = [D(100 * k, [(L, 1)]) for k in range(6)]
    res = run_cycle_level(grid_program(cfg, {(0, 0): sender, (1, 0): receiver}, descs, routes))
    assert res.per_tile_cycles[1] == 3 * L + 4


def test_two_senders_merge_onto_one_link_round_robin():
    # Tile (0,0) sends color 0 to (2,0) through (1,0); tile (1,0) sends color 1 to
    # (2,0). Both start at 0 (blocking sends); link (1,0)->E is shared.
    # Cycle 1: only color 1 is at router (1,0) (color 0 arrives at 2): color 1.
    # From cycle 2 both always have a wavelet there; grants alternate: color 0's
    # wavelet i crosses (1,0)->E at 2 + 2i, color 1's at 1 + 2i.
    # Receiver (recvx color 0 slot 0 at 0, recvx color 1 slot 1 at 1, wait 0, wait 1):
    # color 1's wavelet i in the queue at 3 + 2i, complete 2L + 2; color 0's at
    # 4 + 2i, complete 2L + 3. wait 0 (issued 2) goes on at 2L + 3, wait 1 at
    # max(2L + 4, 2L + 2), halt: 2L + 5.
    # Tile (1,0): injects 0, 1, 2, then wavelet j >= 2 when j - 2 has crossed at
    # 1 + 2(j - 2), so at 2j - 2: complete 2L - 3, halt 2L - 2.
    # Tile (0,0): router (1,0) takes its color 0 at 1, 2, 3, then after each crossing
    # of (1,0)->E (at 2 + 2i) one more: wavelet j >= 2 crosses (0,0)->E at 2j - 1
    # and leaves router (0,0) then, so injection k >= 4 waits for k - 2 to leave:
    # at 2(k - 2) - 1 + 1 = 2k - 4. Complete 2L - 5, halt 2L - 4.
    L = 10
    cfg = MachineConfig(width=3, height=1)
    routes = np.zeros((3, 2, 5), np.uint8)
    add_path(routes, 3, 0, [(0, 0), (1, 0), (2, 0)])
    add_path(routes, 3, 1, [(1, 0), (2, 0)])
    receiver = [I(isa.RECVX, 0, 1, 0), I(isa.RECVX, 1, 1, 1), I(isa.WAIT, 0), I(isa.WAIT, 1), I(isa.HALT)]
    prog = grid_program(cfg, {(0, 0): [I(isa.SEND, 0, 0), I(isa.HALT)], (1, 0): [I(isa.SEND, 1, 0), I(isa.HALT)],
                              (2, 0): receiver}, [D(0, [(L, 1)]), D(100, [(L, 1)])], routes)
    res = run_cycle_level(prog)
    assert res.per_tile_cycles.tolist() == [2 * L - 4, 2 * L - 2, 2 * L + 5]
    assert res.link_wavelets[:2, isa.PORT_E].tolist() == [L, 2 * L]


def test_an_exchange_on_one_color_runs_both_ways_at_full_rate():
    # Tiles (0,0) and (1,0) exchange L wavelets on one color (each sendx at 0, recvx at
    # 1). Each direction has its own buffers: a tile's injections wait in its router's
    # RAMP buffer, the other tile's wavelets in the buffer of the side they come in from
    # (E on tile 0, W on tile 1), and the two directions use different links. So each is
    # a one-hop stream: wavelet i injected at i, in the queue at i + 2 ramp + link = i + 3
    # and taken then (the recvx started at 1). Send completes at L, receive at L + 3.
    # wait 0 (issued 2) goes on at L, wait 1 (issued L) at L + 3, halt: L + 4 on both,
    # as a one-way one-hop stream's receiver.
    L = 10
    cfg = MachineConfig(width=2, height=1)
    routes = np.zeros((2, 1, 5), np.uint8)
    add_path(routes, 2, 0, [(0, 0), (1, 0)])
    add_path(routes, 2, 0, [(1, 0), (0, 0)])
    code = [I(isa.SENDX, 0, 0, 0), I(isa.RECVX, 0, 1, 1), I(isa.WAIT, 0), I(isa.WAIT, 1), I(isa.HALT)]
    prog = grid_program(cfg, {(0, 0): code, (1, 0): code}, [D(0, [(L, 1)]), D(100, [(L, 1)])], routes)
    res = run_cycle_level(prog)
    assert res.per_tile_cycles.tolist() == [L + 4, L + 4]
    assert res.link_wavelets.tolist() == [[0, L, 0, 0], [0, 0, 0, L]]
    np.testing.assert_array_equal(res.per_tile_instructions, functional_icount(prog))


def test_two_input_ports_of_one_color_take_a_link_in_port_order():
    # Tile (0,0) sends L wavelets on color 0 to (2,0) through (1,0); tile (1,0) sends its
    # own L on color 0 to (2,0) too, so in router (1,0) its W buffer (tile 0's) and its
    # RAMP buffer (its own) both want link (1,0)->E on one color: within the color's
    # turn the ports go in the order N, E, S, W, RAMP, so W wins whenever it has a head.
    # Tile 0's a_i is injected at i and is at router (1,0) at i + 2 (ramp + link);
    # tile 1's b_j at j + 1. Cycle 1: only b0 has arrived: it crosses. Cycles 2..L+1:
    # a_i crosses at i + 2 (b1 waits). Then b_j (j >= 1) crosses at L + 1 + j.
    # Tile 0 runs at full rate (its slots in routers (0,0) and (1,0)'s W are held two
    # cycles each): complete L, halt L + 1.
    # Tile 1: b0, b1, b2 injected at 0, 1, 2 (b0 left at the end of 1); b_k (k >= 3)
    # needs b_{k-2}'s slot, free at the end of its crossing L + k - 1: injected at L + k.
    # Complete at 2L, halt 2L + 1.
    # Tile 2 receives all 2L (one recv): link (1,0)->E carries one a cycle from 1 to 2L,
    # each in the queue 2 cycles later (link + ramp); complete 2L + 3, halt 2L + 4.
    L = 10
    cfg = MachineConfig(width=3, height=1)
    routes = np.zeros((3, 1, 5), np.uint8)
    add_path(routes, 3, 0, [(0, 0), (1, 0), (2, 0)])
    add_path(routes, 3, 0, [(1, 0), (2, 0)])
    prog = grid_program(cfg, {(0, 0): [I(isa.SEND, 0, 0), I(isa.HALT)], (1, 0): [I(isa.SEND, 0, 0), I(isa.HALT)],
                              (2, 0): [I(isa.RECV, 0, 1), I(isa.HALT)]}, [D(0, [(L, 1)]), D(100, [(2 * L, 1)])],
                        routes)
    res = run_cycle_level(prog)
    assert res.per_tile_cycles.tolist() == [L + 1, 2 * L + 1, 2 * L + 4]
    assert res.link_wavelets[:2, isa.PORT_E].tolist() == [L, 2 * L]


def ring_of_three(wrap_color):
    """Tiles 0, 1, 2 of a row each send L wavelets west; tile 0's go round to tile 2
    through tile 1 (east), on wrap_color. Every tile sends and receives at once."""
    L = 16
    cfg = MachineConfig(width=3, height=1)
    routes = np.zeros((3, 2, 5), np.uint8)
    add_path(routes, 3, 0, [(1, 0), (0, 0)])
    add_path(routes, 3, 0, [(2, 0), (1, 0)])
    add_path(routes, 3, wrap_color, [(0, 0), (1, 0), (2, 0)])

    def tile(send_color, recv_color):
        return [I(isa.SENDX, send_color, 0, 0), I(isa.RECVX, recv_color, 1, 1), I(isa.WAIT, 0), I(isa.WAIT, 1),
                I(isa.HALT)]
    per_tile = {(0, 0): tile(wrap_color, 0), (1, 0): tile(0, 0), (2, 0): tile(0, wrap_color)}
    return grid_program(cfg, per_tile, [D(0, [(L, 1)]), D(100, [(L, 1)])], routes)


@pytest.mark.parametrize("wrap_color", [0, 1])
def test_a_ring_finishes_with_its_wrap_around_on_any_color(wrap_color):
    # Router (1,0) holds tile 0's wavelets bound east in its W buffer and tile 2's bound
    # for its own RAMP in its E buffer, its own injections in its RAMP buffer: on one
    # color or two, nothing waits behind another side's wavelets, and the four links
    # used (1->W, 2->W, 0->E, 1->E) each carry one stream. So every stream runs as if
    # alone: injections at 0..L-1 (send complete at L, wait 0 issued 2 goes on at L),
    # wavelet i in the queue at i + 2 ramp + h link = i + 2 + h, receive complete at
    # L + 2 + h (the recvx started at 1). Tiles 0 and 1 receive over h = 1: halt L + 4;
    # tile 2 receives tile 0's wrap-around over h = 2: L + 5.
    L = 16
    prog = ring_of_three(wrap_color)
    res = run_cycle_level(prog)
    assert res.per_tile_cycles.tolist() == [L + 4, L + 4, L + 5]
    assert res.per_tile_instructions.tolist() == [5, 5, 5]
    np.testing.assert_array_equal(res.per_tile_instructions, functional_icount(prog))


def chain_of_three(onward_color, L=40):
    """Tile 0 sends L wavelets to tile 1 on color 0; tile 1 first sends its own L on to
    tile 2 on onward_color, then receives tile 0's."""
    cfg = MachineConfig(width=3, height=1)
    routes = np.zeros((3, 2, 5), np.uint8)
    add_path(routes, 3, 0, [(0, 0), (1, 0)])
    add_path(routes, 3, onward_color, [(1, 0), (2, 0)])
    per_tile = {(0, 0): [I(isa.SEND, 0, 0), I(isa.HALT)],
                (1, 0): [I(isa.SEND, onward_color, 0), I(isa.RECV, 0, 1), I(isa.HALT)],
                (2, 0): [I(isa.RECV, onward_color, 1), I(isa.HALT)]}
    return grid_program(cfg, per_tile, [D(0, [(L, 1)]), D(100, [(L, 1)])], routes)


@pytest.mark.parametrize("onward_color", [0, 1])
def test_a_tile_sending_on_the_color_it_is_being_sent(onward_color):
    # Tile 1's router keeps tile 0's wavelets (for its RAMP) in its W buffer and its own
    # (for the link east) in its RAMP buffer, so on one color as on two, the onward send
    # runs at full rate: tile 2 completes at s + lat(1) + L = 3 + L, halt L + 4. Tile
    # 1's send completes at L, its recv starts at r = L and completes at r + L; halt
    # 2L + 1. Tile 0 is held back by that late receiver over the path's buffers, its
    # RAMP buffer, router 1's W buffer and tile 1's queue, D(1) = Q + 2B = 12:
    # max(L, r + L - D(1) + K(1)) = 2L - 12 + 3, halt 2L - 8.
    L = 40
    prog = chain_of_three(onward_color, L=L)
    res = run_cycle_level(prog)
    assert res.per_tile_cycles.tolist() == [2 * L - 8, 2 * L + 1, L + 4]
    np.testing.assert_array_equal(res.per_tile_instructions, functional_icount(prog))


# ------------------------------------------------------------ back-pressure
def backpressure_delay(hops):
    """K(h): cycles from a receiver's take (freeing a queue slot at r + j) to the
    injection it allows. Each freed slot is usable the next cycle and is taken at
    once by the wavelet waiting for it, which frees the slot it leaves at the end of
    that cycle: the queue slot at r + j lets the last router's RAMP output go at
    r + j + 1, that router's slot lets the link into it go at r + j + 2, ..., the
    source router's slot is free at the end of r + j + 1 + h, and the sender
    injects at r + j + 2 + h. Latencies do not enter: a link or ramp reserves the
    room when it takes a wavelet, not when the wavelet arrives."""
    return hops + 2


@pytest.mark.parametrize("hops", [1, 2, 3])
@pytest.mark.parametrize("Q,B,ramp,link", [(8, 2, 1, 1), (4, 3, 2, 2), (6, 4, 1, 3)])
@pytest.mark.parametrize("late", [0, 5, 20, 60])
def test_late_receiver_holds_the_sender_back(hops, Q, B, ramp, link, late):
    # The receiver first runs a vfill of `late` elements (1 + late cycles, or none), so
    # its recv starts at r = 1 + late (r = 0 with none). The fabric holds
    # D = Q + (h + 1) B wavelets of the stream before anything is taken: the queue, and in
    # each of the h + 1 routers on the path the one (color, input port) buffer the stream
    # goes through (the source's RAMP buffer, then in each next router the buffer of the
    # side it comes in from, W here), B each. Wavelet i < D is injected at i; wavelet i >= D
    # needs the slot that take i - D (at r + i - D) frees: at max(i, r + i - D + K).
    # Sender completes at max(s + L, r + L - D + K); halt adds 1.
    # The receiver takes wavelet i at max(r + i, i + lat), lat = 2 ramp + h link (it
    # never starves: D >= K + lat in every case here), so it completes at
    # max(r + L, s + lat + L); halt adds 1.
    L = 48
    D_h = Q + (hops + 1) * B
    K = backpressure_delay(hops)
    lat = 2 * ramp + hops * link
    assert D_h >= K + lat and B >= max(ramp, link) + 1  # the regime the closed forms are for
    cfg = MachineConfig(width=hops + 1, height=1, queue_depth=Q, router_buffer=B, ramp_latency=ramp,
                        link_latency=link)
    prefix = [I(isa.VFILL, 1, 0)] if late else []
    prog = row_stream(hops, L, cfg, receiver=[*prefix, I(isa.RECV, 0, 0), I(isa.HALT)], fill=max(late, 1))
    r = 1 + late if late else 0
    res = run_cycle_level(prog)
    assert res.per_tile_cycles[0] == max(L, r + L - D_h + K) + 1
    assert res.per_tile_cycles[hops] == max(r + L, lat + L) + 1


def test_late_receiver_of_a_multicast_holds_back_the_sender_only():
    # Tile (1,0) sends to (0,0) (waiting) and (2,0) (late: vfill of 60 first, recv at
    # r = 61). The slow path holds D = Q + 2B = 12 (its queue, its router's W buffer, the
    # shared source router's RAMP buffer; the fast path drains). The source router's head
    # leaves only when both outputs took it, so the sender is held as by a single late
    # receiver:
    # max(L, r + L - D + K(1)) = 61 + 40 - 12 + 3 = 92, halt 93; the late receiver
    # completes at r + L = 101, halt 102.
    L = 40
    cfg = MachineConfig(width=3, height=1)
    routes = np.zeros((3, 1, 5), np.uint8)
    add_path(routes, 3, 0, [(1, 0), (0, 0)])
    add_path(routes, 3, 0, [(1, 0), (2, 0)])
    prog = grid_program(cfg, {(1, 0): [I(isa.SEND, 0, 0), I(isa.HALT)], (0, 0): [I(isa.RECV, 0, 0), I(isa.HALT)],
                              (2, 0): [I(isa.VFILL, 1, 0), I(isa.RECV, 0, 0), I(isa.HALT)]},
                        [D(0, [(L, 1)]), D(1000, [(60, 1)])], routes)
    res = run_cycle_level(prog)
    assert res.per_tile_cycles[1] == 93
    assert res.per_tile_cycles[2] == 102
    assert res.per_tile_cycles[0] < res.per_tile_cycles[1] + 5  # the fast receiver follows the sender


# ------------------------------------------------------------ async streams
@pytest.mark.parametrize("work,expect", [(50, 54), (3, 11)])
def test_sendx_overlaps_work_and_wait_takes_the_later_time(work, expect):
    # Tile (0,0): sendx at 0 (the stream completes at L = 10), vfill of `work`
    # elements from 1 to 2 + work, wait 2 issued at 2 + work: goes on at
    # max(2 + work + 1, 10); halt adds 1. work 50: 54; work 3: 11.
    # Tile (1,0): recvx at 0, wait 0 at 1 goes on when the stream completes,
    # 2 ramp + link + L = 13; wait 3 on an idle slot at 13: 14; halt: 15.
    L = 10
    cfg = MachineConfig(width=2, height=1)
    routes = add_path(np.zeros((2, 1, 5), np.uint8), 2, 0, [(0, 0), (1, 0)])
    sender = [I(isa.SENDX, 0, 0, 2), I(isa.VFILL, 1, 0), I(isa.WAIT, 2), I(isa.HALT)]
    receiver = [I(isa.RECVX, 0, 0, 0), I(isa.WAIT, 0), I(isa.WAIT, 3), I(isa.HALT)]
    prog = grid_program(cfg, {(0, 0): sender, (1, 0): receiver}, [D(0, [(L, 1)]), D(500, [(work, 1)])], routes)
    res = run_cycle_level(prog)
    assert res.per_tile_cycles.tolist() == [expect, 15]
    assert res.per_tile_busy.tolist() == [work, 0]
    assert res.per_tile_instructions.tolist() == [4, 4]


# ------------------------------------------------------- structural hazards
def east_pair(sender, receiver, colors, descs):
    cfg = MachineConfig(width=2, height=1)
    routes = np.zeros((2, colors, 5), np.uint8)
    for color in range(colors):
        add_path(routes, 2, color, [(0, 0), (1, 0)])
    prog = grid_program(cfg, {(0, 0): sender, (1, 0): receiver}, descs, routes)
    return prog, run_cycle_level(prog)


def test_stream_on_a_busy_slot_waits_for_it():
    # Tile (0,0): sendx color 0 on slot 1 at 0 (complete at L: one injection a cycle),
    # sendx color 1 on slot 1 at 1: the slot is busy, so it issues when the first
    # stream completes, at L, and completes at 2L; halt (at L + 1) waits for it: 2L + 1.
    # Tile (1,0): recvx color 0 and color 1 at 0 and 1; color 0 completes at 3 + L,
    # color 1 (injected from L) at L + 3 + L; waits at 2 and 3 + L; halt: 2L + 4.
    L = 10
    sender = [I(isa.SENDX, 0, 0, 1), I(isa.SENDX, 1, 0, 1), I(isa.HALT)]
    receiver = [I(isa.RECVX, 0, 0, 0), I(isa.RECVX, 1, 0, 1), I(isa.WAIT, 0), I(isa.WAIT, 1), I(isa.HALT)]
    _, res = east_pair(sender, receiver, 2, [D(0, [(L, 1)])])
    assert res.per_tile_cycles.tolist() == [2 * L + 1, 2 * L + 4]
    assert res.per_tile_instructions.tolist() == [3, 5]


def test_second_send_and_second_receive_on_a_color_wait_for_the_first():
    # Tile (0,0): sendx color 0 on slots 0 and 1 at 0 and 1: the second issues when the
    # first completes (L) and completes at 2L; halt waits: 2L + 1.
    # Tile (1,0): recvx color 0 on slot 0 at 0, recvx color 0 on slot 1 at 1: the second
    # issues when the first completes, at 3 + L; wavelet L is in the queue by then
    # (injected at L, there at L + 3) and the rest follow one a cycle: complete at
    # 3 + 2L. wait 1 (issued 4 + L) goes on then; halt: 2L + 4.
    L = 10
    sender = [I(isa.SENDX, 0, 0, 0), I(isa.SENDX, 0, 0, 1), I(isa.HALT)]
    receiver = [I(isa.RECVX, 0, 0, 0), I(isa.RECVX, 0, 0, 1), I(isa.WAIT, 1), I(isa.HALT)]
    prog, res = east_pair(sender, receiver, 1, [D(0, [(L, 1)])])
    assert res.per_tile_cycles.tolist() == [2 * L + 1, 2 * L + 4]
    np.testing.assert_array_equal(res.per_tile_instructions, functional_icount(prog))


def test_halt_waits_for_the_tiles_streams():
    # sendx at 0 completes at L; halt issued at 1 waits for it: L + 1. The receiver's
    # recvx completes at 3 + L and its halt waits for it too: L + 4.
    L = 12
    prog, res = east_pair([I(isa.SENDX, 0, 0, 3), I(isa.HALT)], [I(isa.RECVX, 0, 0, 2), I(isa.HALT)], 1,
                          [D(0, [(L, 1)])])
    assert res.per_tile_cycles.tolist() == [L + 1, L + 4]
    np.testing.assert_array_equal(res.per_tile_instructions, functional_icount(prog))


def test_idle_stretches_are_skipped():
    # An mmac of 100 x 40 x 25 = 100,000 cycles, then a 1-hop send of 5 wavelets
    # to a receiver that waited all along: receiver completes at
    # s + 2 ramp + link + L = 100,001 + 3 + 5, halt 100,010. Only the cycles around
    # the transfer are stepped.
    cfg = MachineConfig(width=2, height=1)
    routes = add_path(np.zeros((2, 1, 5), np.uint8), 2, 0, [(0, 0), (1, 0)])
    descs = [D(0, [(5, 1)]), D(0, [(100, 25), (25, 1)]), D(2500, [(25, 40), (40, 1)]), D(3500, [(100, 40), (40, 1)])]
    sender = [I(isa.MMAC, 3, 1, 2), I(isa.SEND, 0, 0), I(isa.HALT)]
    prog = grid_program(cfg, {(0, 0): sender, (1, 0): [I(isa.RECV, 0, 0), I(isa.HALT)]}, descs, routes, 8000)
    res = run_cycle_level(prog)
    assert res.per_tile_cycles.tolist() == [100_001 + 5 + 1, 100_010]
    assert res.per_tile_busy.tolist() == [100_000, 0]
    assert res.simulated_cycles >= 100_010
    assert res.stepped_cycles < 50


# ------------------------------------------------------------------- errors
def two_tiles(sender, receiver, L=4, routes=True, max_cycles=10**10):
    cfg = MachineConfig(width=2, height=1)
    r = np.zeros((2, 2, 5), np.uint8)
    if routes:
        for color in (0, 1):
            add_path(r, 2, color, [(0, 0), (1, 0)])
    prog = grid_program(cfg, {(0, 0): sender, (1, 0): receiver}, [D(0, [(L, 1)])], r)
    return run_cycle_level(prog, max_cycles=max_cycles)


def test_deadlock_names_a_tile():
    # both tiles receive first: nothing is ever sent
    with pytest.raises(CycleLevelError, match=r"deadlock.*tile \(0,0\).*recv"):
        two_tiles([I(isa.RECV, 1, 0), I(isa.SEND, 0, 0), I(isa.HALT)], [I(isa.RECV, 0, 0), I(isa.HALT)])


def test_sender_with_no_receiver_deadlocks_once_the_fabric_is_full():
    # 20 wavelets, the fabric holds Q + 2B = 12 and nobody takes them
    with pytest.raises(CycleLevelError, match=r"deadlock.*tile \(0,0\).*send color 0 slot 4: 8 wavelets left"):
        two_tiles([I(isa.SEND, 0, 0), I(isa.HALT)], [I(isa.HALT)], L=20)


@pytest.mark.parametrize("sender,receiver,message", [
    ([I(isa.LI, 2, 0), I(isa.DIV, 3, 3, 2), I(isa.HALT)], [I(isa.HALT)], r"tile \(0,0\).*division by zero"),
    ([I(isa.HALT)], [I(isa.LI, 2, 0)], r"tile \(1,0\).*program counter"),  # its code is last
])
def test_faults_name_the_tile(sender, receiver, message):
    with pytest.raises(CycleLevelError, match=message):
        two_tiles(sender, receiver)


def test_send_without_a_route_faults():
    with pytest.raises(CycleLevelError, match=r"tile \(0,0\).*reach no receiver"):
        two_tiles([I(isa.SEND, 0, 0), I(isa.HALT)], [I(isa.HALT)], routes=False)


def test_cycle_budget():
    with pytest.raises(CycleLevelError, match=r"budget of 1000 cycles"):
        two_tiles([I(isa.JMP, 0)], [I(isa.HALT)], max_cycles=1000)


# --------------------------------------------------------- compiled kernels
KERNEL_CASES = [
    ("matmul", (2, 2), {"M": 8, "K": 8, "N": 8}, {}),
    ("matmul", (4, 4), {"M": 16, "K": 16, "N": 16}, {}),
    ("gemv", (4, 4), {"M": 16, "N": 16}, {}),
    ("layernorm", (2, 2), {"R": 8, "C": 8}, {}),
    ("softmax", (4, 4), {"R": 16, "C": 16}, {}),
    ("matmul_cannon", (2, 2), {"M": 8, "K": 8, "N": 8}, {}),
    ("attention", (2, 2), {"S": 8, "D": 8}, {}),
    ("attention", (4, 2), {"S": 16, "D": 8}, {}),
    # rings whose wrap-around passes the other way on one color through the middle routers,
    # and tiles sending on the color they receive on: these deadlocked with one buffer per
    # (router, color) shared by the input ports
    ("matmul_cannon", (3, 3), {"M": 24, "K": 24, "N": 24}, {}),
    ("matmul_cannon", (4, 4), {"M": 32, "K": 32, "N": 32}, {}),
    ("attention", (4, 4), {"S": 64, "D": 32}, {}),
    ("attention", (4, 2), {"S": 64, "D": 32}, {}),
    ("transformer_block", (2, 2), {"S": 16, "Dm": 16, "Dff": 32}, {"heads": 2, "causal": 1}),
    ("matmul_systolic", (4, 4), {"M": 32, "K": 32, "N": 32}, {}),
    ("matmul_systolic_resident", (4, 2), {"AR": 4, "AK": 64, "BK": 32, "BC": 8}, {"M": 16, "N": 16}),
]


@pytest.mark.parametrize("name,grid,sizes,params", KERNEL_CASES)
def test_compiled_kernels_retire_what_the_functional_emulator_retires(name, grid, sizes, params):
    spec = BUNDLED[name]
    inputs = spec.make_inputs(np.random.default_rng(0), sizes)
    program = compile_kernel(name, grid, {k: v.shape for k, v in inputs.items()}, params).program
    emu = Emulator(program)
    emu.load_inputs(inputs)
    emu.run()
    res = run_cycle_level(program)
    np.testing.assert_array_equal(res.per_tile_instructions, emu.state.icount)
    np.testing.assert_array_equal(res.link_wavelets, emu.state.link_wavelets)  # same routes, same sends
    assert res.cycles == res.per_tile_cycles.max() >= res.per_tile_instructions.max()
    assert res.stepped_cycles <= res.simulated_cycles


def test_pausing_and_run_ahead_chunks_change_nothing():
    # The numba loop may return to Python after any cycle and a core may stop running
    # ahead after any instruction: a run cut into tiny pieces gives the same result
    # (only more cycles are stepped: each stop is a cycle the clock cannot skip).
    inputs = BUNDLED["matmul"].make_inputs(np.random.default_rng(0), {"M": 16, "K": 16, "N": 16})
    program = compile_kernel("matmul", (4, 4), {k: v.shape for k, v in inputs.items()}).program
    whole = run_cycle_level(program)
    cut = run_state(program, CycleState(program), work_per_call=7, core_chunk=3)
    for field in ("per_tile_cycles", "per_tile_busy", "per_tile_instructions", "link_wavelets"):
        np.testing.assert_array_equal(getattr(cut, field), getattr(whole, field))
    assert cut.simulated_cycles == whole.simulated_cycles
    assert cut.stepped_cycles >= whole.stepped_cycles
