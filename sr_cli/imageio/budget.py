"""sr's pixel budget: how large an image it reads or makes, checked before any pixel is decoded or allocated.

A 140 kB PNG can declare 12000 x 12000 pixels, and `--scale 1e6` asks for a terapixel: both are refused from
the header (or the factor) with one line that names the size and the way to raise the limit. The defaults are
far above what a photograph needs (a 100 Mpx medium-format frame is read; its x4 result, 1600 Mpx, is not
made): `--max-pixels N` or `SR_MAX_PIXELS=N` sets both limits to N (suffixes k, M, G: powers of 1000).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from sr_cli.errors import InputError, OutputError, UsageError

DEFAULT_MAX_INPUT_PIXELS = 200_000_000
DEFAULT_MAX_OUTPUT_PIXELS = 500_000_000
ENV_MAX_PIXELS = "SR_MAX_PIXELS"
OPTION_MAX_PIXELS = "--max-pixels"
HOW_TO_RAISE = f"pass {OPTION_MAX_PIXELS} N or set {ENV_MAX_PIXELS}=N (e.g. 2G) if the machine has the memory"
_COUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*$")
_MULTIPLIER = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


@dataclass(frozen=True)
class PixelBudget:
    """The largest width x height sr reads (`input`) and produces (`output`)."""

    input: int = DEFAULT_MAX_INPUT_PIXELS
    output: int = DEFAULT_MAX_OUTPUT_PIXELS


def parse_pixel_count(text: str, source: str = OPTION_MAX_PIXELS) -> int:
    """'300000000', '300M', '1.5G' -> a pixel count; UsageError naming `source` otherwise."""
    match = _COUNT.match(text)
    if match is None:
        raise UsageError(f"{source} {text!r}: give a pixel count such as 400000000, 400M or 1.5G")
    count = int(float(match.group(1)) * _MULTIPLIER[match.group(2).lower()])
    if count < 1:
        raise UsageError(f"{source} {text!r}: the limit must be at least 1 pixel")
    return count


def pixel_budget(max_pixels: int | str | None = None) -> PixelBudget:
    """`max_pixels` (the option) > SR_MAX_PIXELS > the defaults; one value sets both limits."""
    if max_pixels is None:
        from_env = os.environ.get(ENV_MAX_PIXELS, "").strip()
        if not from_env:
            return PixelBudget()
        max_pixels = parse_pixel_count(from_env, ENV_MAX_PIXELS)
    elif isinstance(max_pixels, str):
        max_pixels = parse_pixel_count(max_pixels)
    elif not (isinstance(max_pixels, int) and max_pixels >= 1):
        raise UsageError(f"{OPTION_MAX_PIXELS} {max_pixels!r}: the limit must be a whole number of pixels >= 1")
    return PixelBudget(input=max_pixels, output=max_pixels)


def megapixels(count: float) -> str:
    return f"{count / 1e6:.1f} Mpx" if count >= 1e5 else f"{int(count)} px"


def check_input_size(source: object, width: int, height: int, budget: PixelBudget) -> None:
    """InputError when an image's declared size is over the input limit (call it before decoding)."""
    pixels = width * height
    if pixels > budget.input:
        raise InputError(f"{source}: {width}x{height} ({megapixels(pixels)}) is more than sr reads "
                         f"(limit {megapixels(budget.input)}; a decompression bomb or a huge scan); {HOW_TO_RAISE}")


def check_output_size(source: object, width: int, height: int, factor: float, budget: PixelBudget) -> None:
    """OutputError when the result of an upscale by `factor` is over the output limit (call it before allocating)."""
    pixels = width * height
    if pixels > budget.output:
        raise OutputError(f"{source}: the x{factor:g} result would be {width}x{height} ({megapixels(pixels)}), more than "
                          f"sr makes (limit {megapixels(budget.output)}); use a smaller factor or tiles of the image, or "
                          f"{HOW_TO_RAISE}")


def check_output_factor(factor: float, budget: PixelBudget, option: str = "--scale") -> None:
    """UsageError for a factor that takes even a 1x1 image past the output limit (or is not a number)."""
    if not (math.isfinite(factor) and factor > 0):
        raise UsageError(f"{option} {factor!r} must be a positive number")
    side = math.floor(factor + 0.5)
    if side * side > budget.output:
        raise UsageError(f"{option} {factor:g}: even a 1x1 image would become {megapixels(side * side)}, more than sr "
                         f"makes (limit {megapixels(budget.output)}); use a smaller factor, or {HOW_TO_RAISE}")
