"""What sr uses when the user names no model: kept free of torch so `sr --help` can say it.

DEFAULT_MODEL is the manifest name `sr upscale` and `sr eval` use without --model/--weights: Real-ESRGAN
x4plus, the model Real-ESRGAN's own CLI and upscayl default to for photos, shipped inside the package
(sr_cli/bundled/) so it works with no network. DEFAULT_BLEND_PAIR is the (PSNR, GAN) pair `sr blend`
interpolates without --psnr/--gan: ESRGAN's, the pair of the paper that introduced network interpolation.
"""
from __future__ import annotations

DEFAULT_MODEL = "realesrgan-x4plus"
DEFAULT_BLEND_PAIR = ("esrgan-psnr", "esrgan")
# `sr eval` without --model: the default model beside the bicubic baseline (at the scales the model serves).
DEFAULT_EVAL_MODELS = ("bicubic", DEFAULT_MODEL)
# `sr eval --model ...` without --scale.
DEFAULT_EVAL_SCALE = 4
