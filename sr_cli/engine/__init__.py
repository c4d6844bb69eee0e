"""Tensor-only inference: tiling, feathered blending, self-ensemble, device, precision, progress.

Knows no model names and no file formats. The entry points are `upscale_tensor` and `upscale_bands` (the same
result as finished row bands, for output streamed to disk); an `EnginePlan` says how they run the model.
"""
from sr_cli.engine.device import describe_device, resolve_device
from sr_cli.engine.memory import estimate_cost_per_pixel
from sr_cli.engine.plan import EnginePlan
from sr_cli.engine.precision import Precision, resolve_precision
from sr_cli.engine.upscale import TileStats, upscale_bands, upscale_tensor

__all__ = ["upscale_tensor", "upscale_bands", "EnginePlan", "TileStats", "resolve_device", "describe_device", "resolve_precision",
           "Precision", "estimate_cost_per_pixel"]
