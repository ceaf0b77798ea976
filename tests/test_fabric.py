"""The fabric: static multicast routes, in-order delivery, bounded queues, deadlocks, faults."""
import numpy as np
import pytest

from tilegrid.compiler.passes.route_streams import pattern_routes
from conftest import assert_bits_equal, build_program
from tilegrid.emulator import (BudgetError, DeadlockError, Emulator, EmulatorError, MachineConfig, ProgramError,
                              RunBudget, isa)
from tilegrid.emulator.isa import PORT_E, PORT_RAMP, PORT_W, descriptor as D, instr as I

BIT = {p: 1 << p for p in range(5)}


def branch_on_tile(tile_programs, width):
    """One SPMD program that dispatches on tile index y*W + x to per-tile code lists."""
    head, bodies = [], []
    head.append(I(isa.MULI, 2, 1, width))
    head.append(I(isa.ADD, 2, 2, 0))                # r2 = tile index
    n_cases = len(tile_programs)
    # layout: head (2) + per case: LI r3, t; BEQ r2, r3, target  -> 2 instrs each; then HALT for others
    start = len(head) + 2 * n_cases + 1
    targets = []
    for code in tile_programs.values():
        targets.append(start + sum(len(b) for b in bodies))
        bodies.append(list(code) + [I(isa.HALT)])
    for (t, _), target in zip(tile_programs.items(), targets):
        head += [I(isa.LI, 3, t), I(isa.BEQ, 2, 3, target)]
    head.append(I(isa.HALT))
    return head + [row for b in bodies for row in b]


def run(width, height, tile_programs, descs, routes, sram=64, init=None, config=None, **kw):
    code = branch_on_tile(tile_programs, width)
    prog = build_program(width, height, code, descs, sram, routes=routes, config=config)
    emu = Emulator(prog, **kw)
    if init is not None:
        emu.state.mem[:, :len(init)] = init
    stats = emu.run()
    return emu, stats


def test_row_broadcast_multicast_reaches_exactly_the_row():
    W, H = 4, 3
    routes = pattern_routes("row_bcast", W, H)[:, None, :]
    src = 1 * W + 2  # tile (2, 1)
    init = np.arange(64, dtype=np.float32)
    progs = {src: [I(isa.SEND, 0, 0)]}
    for x in range(W):
        if x != 2:
            progs[1 * W + x] = [I(isa.RECV, 0, 1)]
    emu, stats = run(W, H, progs, [D(0, [(20, 1)]), D(32, [(20, 1)])], routes, init=init)
    mem = emu.state.mem
    for t in range(W * H):
        x, y = t % W, t // W
        got = mem[t, 32:52]
        if y == 1 and x != 2:
            assert_bits_equal(got, init[0:20])
        else:
            assert_bits_equal(got, init[32:52])  # untouched
    assert stats.wavelets == 20
    assert stats.wavelet_hops == 20 * 3  # links 2->1, 1->0 and 2->3
    link = np.array(stats.link_wavelets)
    assert link[src, PORT_E] == 20 and link[src, PORT_W] == 20 and link[1 * W + 1, PORT_W] == 20


def east_routes(W, H=1):
    return pattern_routes("east", W, H)[:, None, :]


def test_messages_arrive_in_order_and_receives_need_not_match_sends():
    init = np.arange(64, dtype=np.float32) + 1
    descs = [D(0, [(5, 1)]), D(5, [(5, 1)]), D(10, [(5, 1)]), D(32, [(15, 1)])]
    progs = {0: [I(isa.SEND, 0, 0), I(isa.SEND, 0, 1), I(isa.SEND, 0, 2)], 1: [I(isa.RECV, 0, 3)]}
    emu, _ = run(2, 1, progs, descs, east_routes(2), init=init)
    assert_bits_equal(emu.state.mem[1, 32:47], init[0:15])


def test_back_pressure_sender_waits_for_a_late_receiver():
    """The receiver computes first; the sender's 40 wavelets cannot all fit the 8-deep queue."""
    init = np.arange(128, dtype=np.float32)
    descs = [D(0, [(40, 1)]), D(64, [(40, 1)]), D(0, [(8, 8), (8, 1)])]
    late = [I(isa.MMAC, 2, 2, 2)] * 3 + [I(isa.RECV, 0, 1)]  # busy work, then receive
    emu, stats = run(2, 1, {0: [I(isa.SEND, 0, 0)], 1: late}, descs, east_routes(2), sram=128,
                     init=init)
    assert_bits_equal(emu.state.mem[1, 64:104], init[0:40])
    assert stats.rounds >= 2          # the send could not complete in the first round
    assert stats.undelivered_wavelets == 0
    # the sender cannot finish before the receiver has started receiving (timing model)
    assert emu.state.clock[0] >= 3 * 512


@pytest.mark.parametrize("depth", [4, 8, 16])
def test_queue_depth_is_the_buffering_limit(depth):
    """A send nobody receives completes if it fits in the queue, and deadlocks if it does not."""
    cfg = MachineConfig(width=2, height=1, queue_depth=depth)
    fits = [D(0, [(depth, 1)])]
    emu, stats = run(2, 1, {0: [I(isa.SEND, 0, 0)]}, fits, east_routes(2), config=cfg)
    assert stats.undelivered_wavelets == depth
    too_big = [D(0, [(depth + 1, 1)])]
    with pytest.raises(DeadlockError) as err:
        run(2, 1, {0: [I(isa.SEND, 0, 0)]}, too_big, east_routes(2), config=cfg)
    msg = str(err.value)
    assert "tile (0,0) waits to send 1 more wavelets on color 0" in msg
    assert f"(1,0): {depth}/{depth}" in msg


def test_deadlock_two_tiles_receive_first():
    routes = np.zeros((2, 1, 5), np.uint8)
    routes[0, 0, PORT_RAMP] = BIT[PORT_E]
    routes[1, 0, PORT_W] = BIT[PORT_RAMP]
    routes[1, 0, PORT_RAMP] = BIT[PORT_W]
    routes[0, 0, PORT_E] = BIT[PORT_RAMP]
    progs = {0: [I(isa.RECV, 0, 0), I(isa.SEND, 0, 0)], 1: [I(isa.RECV, 0, 0), I(isa.SEND, 0, 0)]}
    with pytest.raises(DeadlockError) as err:
        run(2, 1, progs, [D(0, [(4, 1)])], routes)
    msg = str(err.value)
    assert "deadlock: 2 tiles are blocked" in msg
    assert "tile (0,0) waits to receive 4 more wavelets on color 0 (0 queued)" in msg
    assert "tile (1,0) waits to receive 4 more wavelets" in msg


def test_color_conflict_is_reported():
    """Two senders interleaving partial messages into one receiver queue on one color."""
    routes = np.zeros((3, 2, 5), np.uint8)
    routes[0, 0, PORT_RAMP] = BIT[PORT_E]
    routes[2, 0, PORT_RAMP] = BIT[PORT_W]
    routes[1, 0, PORT_W] = BIT[PORT_RAMP]
    routes[1, 0, PORT_E] = BIT[PORT_RAMP]
    routes[0, 1, PORT_RAMP] = BIT[PORT_E]
    routes[1, 1, PORT_W] = BIT[PORT_RAMP]
    descs = [D(0, [(20, 1)]), D(0, [(1, 1)]), D(0, [(40, 1)])]
    progs = {0: [I(isa.SEND, 0, 0), I(isa.SEND, 1, 1)], 2: [I(isa.SEND, 0, 0)],
             1: [I(isa.RECV, 1, 1), I(isa.RECV, 0, 2)]}
    with pytest.raises(EmulatorError, match="color conflict on color 0"):
        run(3, 1, progs, descs, routes)


def test_send_with_no_route_is_an_error():
    routes = np.zeros((2, 1, 5), np.uint8)
    with pytest.raises(EmulatorError, match=r"send from tile \(0,0\) on color 0 reaches no receiver"):
        run(2, 1, {0: [I(isa.SEND, 0, 0)]}, [D(0, [(4, 1)])], routes)


def test_route_loop_is_an_error_not_a_hang():
    routes = np.zeros((2, 1, 5), np.uint8)
    routes[0, 0, PORT_RAMP] = BIT[PORT_E]
    routes[1, 0, PORT_W] = BIT[PORT_W]   # bounce back ...
    routes[0, 0, PORT_E] = BIT[PORT_E]   # ... and forth
    # refused when the program is verified, before the fabric could trace it
    with pytest.raises(ProgramError, match="back out the port it came in on"):
        run(2, 1, {0: [I(isa.SEND, 0, 0)]}, [D(0, [(4, 1)])], routes)


def test_descriptor_outside_sram_faults():
    descs = [D(0, [(8, 1)], base_reg=2)]
    code = {0: [I(isa.LI, 2, 60), I(isa.VFILL, 0, 0)]}
    with pytest.raises(EmulatorError, match=r"tile \(0,0\) faulted: descriptor outside"):
        run(1, 1, code, descs, np.zeros((1, 0, 5), np.uint8))


def test_runaway_loop_hits_the_instruction_budget():
    code = [I(isa.JMP, 0)]
    prog = build_program(1, 1, code, [D(0, [(1, 1)])], 1)
    with pytest.raises(BudgetError, match=r"tile \(0,0\) used its instruction budget of 10000") as info:
        Emulator(prog, RunBudget(instructions=10_000)).run()
    assert "tile (0,0) stopped at pc 0: jmp" in str(info.value)


def test_budget_stops_exactly_at_the_limit_even_across_pauses():
    """A pause inside the compute phase (to let Ctrl-C through) is invisible:
    a budget of n instructions retires exactly n, however the run is sliced."""
    code = [I(isa.JMP, 0)]
    prog = build_program(2, 1, code, [D(0, [(1, 1)])], 1)
    emu = Emulator(prog, RunBudget(instructions=5_000_000))
    with pytest.raises(BudgetError):
        emu.run()
    assert emu.state.icount.tolist() == [5_000_000, 5_000_000]


def test_cycle_budget_names_every_unfinished_tile():
    # tile 0 spins; tile 1 waits forever for a message tile 0 never sends
    code = [I(isa.LI, 2, 0), I(isa.BEQ, 0, 2, 1), I(isa.RECV, 0, 0), I(isa.HALT)]
    routes = np.zeros((2, 1, 5), np.uint8)
    routes[0, 0, PORT_RAMP] = BIT[PORT_E]
    routes[1, 0, PORT_W] = BIT[PORT_RAMP]
    prog = build_program(2, 1, code, [D(0, [(1, 1)])], 1, routes=routes)
    with pytest.raises(BudgetError, match="cycle budget of 1000") as info:
        Emulator(prog, RunBudget(cycles=1000)).run()
    text = str(info.value)
    assert "2 of 2 tiles had not finished" in text
    assert "tile (0,0) stopped at pc 1: beq" in text
    assert "tile (1,0) receiving at pc 2: recv" in text


def test_round_budget():
    # a ping-pong between two tiles: every round moves one wavelet
    code = [I(isa.LI, 2, 0),
            I(isa.BEQ, 0, 2, 5),                      # tile 0 sends first, tile 1 receives first
            I(isa.RECV, 0, 0), I(isa.SEND, 0, 0), I(isa.JMP, 2),
            I(isa.SEND, 0, 0), I(isa.RECV, 0, 0), I(isa.JMP, 5)]
    routes = np.zeros((2, 1, 5), np.uint8)
    routes[0, 0, PORT_RAMP] = BIT[PORT_E]
    routes[1, 0, PORT_W] = BIT[PORT_RAMP]
    routes[1, 0, PORT_RAMP] = BIT[PORT_W]
    routes[0, 0, PORT_E] = BIT[PORT_RAMP]
    prog = build_program(2, 1, code, [D(0, [(1, 1)])], 1, routes=routes)
    with pytest.raises(BudgetError, match="budget of 50 rounds"):
        Emulator(prog, RunBudget(rounds=50)).run()


def test_transfer_latency_grows_with_hops():
    """A row broadcast reaches far tiles later than near ones (timing model)."""
    W = 8
    routes = pattern_routes("row_bcast", W, 1)[:, None, :]
    progs = {0: [I(isa.SEND, 0, 0)]}
    for x in range(1, W):
        progs[x] = [I(isa.RECV, 0, 1)]
    emu, stats = run(W, 1, progs, [D(0, [(16, 1)]), D(32, [(16, 1)])], routes)
    clocks = emu.state.clock
    assert all(clocks[x + 1] > clocks[x] for x in range(1, W - 1))
    assert stats.cycles >= 16 + (W - 1)


def test_a_sender_can_receive_its_own_broadcast():
    # row_bcast_self routes RAMP -> E+W+RAMP: the root's own queue gets the
    # message too (hop 0), which the compiler uses instead of a local copy.
    W = 3
    routes = pattern_routes("row_bcast_self", W, 1)[:, None, :]
    init = np.arange(64, dtype=np.float32)
    progs = {0: [I(isa.SENDX, 0, 0, 0), I(isa.RECV, 0, 1), I(isa.WAIT, 0)],
             1: [I(isa.RECV, 0, 1)], 2: [I(isa.RECV, 0, 1)]}
    emu, stats = run(W, 1, progs, [D(0, [(20, 1)]), D(32, [(20, 1)])], routes, init=init)
    for t in range(W):
        assert_bits_equal(emu.state.mem[t, 32:52], init[0:20])
    assert stats.wavelets == 20 and stats.undelivered_wavelets == 0
