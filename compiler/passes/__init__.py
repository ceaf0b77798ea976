"""Lowering passes, in pipeline order: each is a function from IR to IR."""
from .lower_collectives import lower_collectives
from .route_streams import route_streams
from .allocate_sram import allocate_sram
from .emit_code import emit_code

__all__ = ["lower_collectives", "route_streams", "allocate_sram", "emit_code"]
