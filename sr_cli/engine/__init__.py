"""Tensor-only inference: tiling, feathered blending, self-ensemble, device, precision, progress.

Knows no model names and no file formats.
"""
