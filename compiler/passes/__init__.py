"""Lowering passes, in pipeline order: each is a function from IR to IR."""
from .double_buffer import double_buffer
from .lower_collectives import lower_collectives
from .route_streams import route_streams
from .allocate_sram import allocate_sram
from .emit_code import emit_code

__all__ = ["double_buffer", "lower_collectives", "route_streams", "allocate_sram", "emit_code"]
