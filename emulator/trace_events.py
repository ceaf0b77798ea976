"""Kinds of the timed events a traced run records (the emulator writes them, tilegrid/trace.py reads them).

A run's events are a numpy int64 array of shape [n, EVENT_FIELDS], one row per event:
``(tile, kind, start_cycle, end_cycle, a, b)``, tile = y * width + x, the interval
half-open ``[start_cycle, end_cycle)``.

=====================  =====  ===========================================  ==========================================
kind                   value  a                                            b
=====================  =====  ===========================================  ==========================================
EV_SCALAR              0      first pc of a run of scalar/control instrs   how many instructions
EV_VECTOR              1      pc                                           opcode (isa.MNEMONIC)
EV_MMAC                2      pc                                           multiply-adds
EV_BLOCKED             3      slot the core waits on                       the tile it waits on, -1 unknown
EV_SEND                4      slot * 256 + color                           wavelets
EV_RECV                5      slot * 256 + color                           wavelets
EV_BACKPRESSURE        6      slot * 256 + color                           the receiving tile that held the send
=====================  =====  ===========================================  ==========================================

Core events (SCALAR, VECTOR, MMAC, BLOCKED) of one tile never overlap and tile the
interval [0, that tile's cycles): their durations sum to the tile's cycle count.
Stream events (SEND, RECV, BACKPRESSURE) belong to a stream slot, ``a // 256``: 0..3
are the slots of sendx/recvx, 4 (isa.BLOCKING_SLOT) the hidden slot of blocking
send/recv. A BACKPRESSURE event lies within the SEND stream it held.
"""

EV_SCALAR = 0        # core: a run of scalar/control instructions; a = first pc, b = count
EV_VECTOR = 1        # core: one vector instruction; a = pc, b = opcode
EV_MMAC = 2          # core: one mmac; a = pc, b = multiply-adds
EV_BLOCKED = 3       # core: waiting for a stream (blocking send/recv or wait); a = slot, b = the tile it waits on (-1 unknown)
EV_SEND = 4          # stream slot: a send stream from first injection to completion; a = slot*256 + color, b = wavelets
EV_RECV = 5          # stream slot: a receive stream; a = slot*256 + color, b = wavelets
EV_BACKPRESSURE = 6  # stream slot: a send held because a receiver's queue was full; a = slot*256 + color, b = the receiving tile that held it

EVENT_FIELDS = 6     # columns: tile, kind, start_cycle, end_cycle, a, b
SLOT_SHIFT = 256     # a = slot * SLOT_SHIFT + color for the stream kinds
CORE_KINDS = (EV_SCALAR, EV_VECTOR, EV_MMAC, EV_BLOCKED)
STREAM_KINDS = (EV_SEND, EV_RECV, EV_BACKPRESSURE)
KIND_NAMES = ("scalar", "vector", "mmac", "blocked", "send", "recv", "backpressure")
