"""The error-vs-cost curve of tile context (docs/images/tile_cost.png) from bench/min_overlap.py's measurements.

Left: Real-ESRGAN x4plus (real weights). x = context c in input pixels per side; under each tick, the work of
`sr` at a forced tile of 256 on a 512x512 input ((512 + 2c)^2 window pixels, 2x2 tiles) over Real-ESRGAN's
at the same tile (4 windows of 256 + tile_pad 10: 532^2). y = levels (8-bit) from the whole-image output, log
scale. Curves: the worst pixel of a hard-cropped tile with at least c of context (max over d >= c of e(d),
six photos); the worst-case bound of a blend with the 16 px fade inside the context (at x px past a core
boundary: w(x) e(c - x) + (1 - w(x)) e(c + x), the worst e at every position at once, so pessimistic); and
the engine itself (max over the strips and tile sizes of `bench/min_overlap.py --engine`).
Right: the hard-crop curve of every family measured, with its exact radius.

Run: python3 bench/plot_tile_cost.py   (reads and writes docs/images/)
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
RRDB = "rrdb realesrgan-x4plus (real)"
FEATHER = 16
Y_LOW, Y_HIGH = 0.01, 300.0
COLOURS = [(40, 90, 200), (200, 80, 40), (30, 150, 60), (140, 60, 170), (120, 120, 120)]


def tail_max(curve: list[float]) -> list[float]:
    """max over d >= c of e(d): what a tile with at least c of context can be off by."""
    usable = len(curve) - 4  # the last columns of a window prove nothing (bench/min_overlap.needed)
    out, running = [0.0] * usable, 0.0
    for c in range(usable - 1, -1, -1):
        running = max(running, curve[c])
        out[c] = running
    return out


def blend_bound(curve: list[float], context: int, radius: int = FEATHER) -> float | None:
    """Worst blended pixel with the fade inside `context` (None where e(c + x) is beyond the measurement)."""
    def e(d: int) -> float | None:
        return curve[max(d, 0)] if d < len(curve) else None

    worst = 0.0
    for x in range(radius):  # pixel centres x + 0.5 past the boundary, into the next core
        t = x + 0.5
        weight = 0.5 * (1 - math.sin(t * math.pi / (2 * radius)))  # of the tile it leaves
        leaving, entering = e(context - x - 1), e(context + x)
        if leaving is None:
            return None
        entering_value = 0.0 if entering is None else entering  # beyond the window: below the last measured
        worst = max(worst, weight * leaving + (1 - weight) * entering_value)
    return worst


def work_ratio(context: int) -> float:
    return ((512 + 2 * context) / (256 + 10) / 2) ** 2


class Chart:
    def __init__(self, draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], x_max: int, title: str) -> None:
        self.draw, self.box, self.x_max = draw, box, x_max
        left, top, right, bottom = box
        draw.rectangle(box, outline="black")
        draw.text((left, top - 18), title, fill="black")
        for level in (0.01, 0.1, 1, 2, 10, 100):
            _, y = self.at(0, level)
            draw.line([(left, y), (right, y)], fill=(225, 225, 225) if level not in (1, 2) else (230, 150, 150))
            draw.text((left - 34, y - 6), f"{level:g}", fill="gray")

    def at(self, x: float, y: float) -> tuple[float, float]:
        left, top, right, bottom = self.box
        y = min(max(y, Y_LOW), Y_HIGH)
        fraction = (math.log10(y) - math.log10(Y_LOW)) / (math.log10(Y_HIGH) - math.log10(Y_LOW))
        return left + (right - left) * x / self.x_max, bottom - (bottom - top) * fraction

    def x_ticks(self, ticks: list[int], under: dict[int, str] | None = None) -> None:
        bottom = self.box[3]
        for tick in ticks:
            x, _ = self.at(tick, Y_LOW)
            self.draw.text((x - 6, bottom + 4), str(tick), fill="gray")
            if under and tick in under:
                self.draw.text((x - 14, bottom + 18), under[tick], fill=(200, 80, 40))

    def series(self, points: Sequence[tuple[float, float]], colour: tuple[int, int, int], label: str, row: int,
               dots: bool = False) -> None:
        xy = [self.at(x, y) for x, y in points]
        if len(xy) > 1:
            self.draw.line(xy, fill=colour, width=2)
        for px, py in xy if dots else []:
            self.draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=colour)
        left, top, right, _ = self.box
        self.draw.line([(right - 230, top + 12 + 16 * row), (right - 210, top + 12 + 16 * row)], fill=colour, width=3)
        self.draw.text((right - 204, top + 6 + 16 * row), label, fill="black")


def main() -> None:
    data = json.loads((IMAGES / "tile_context.json").read_text())
    rrdb = data[RRDB]
    worst = rrdb["worst"]
    image = Image.new("RGB", (1100, 440), "white")
    draw = ImageDraw.Draw(image)
    left = Chart(draw, (60, 40, 520, 340), 80, "Real-ESRGAN x4plus: levels from the whole image vs context (px)")
    ticks = [0, 16, 32, 48, 64, 80]
    left.x_ticks(ticks, {c: f"x{work_ratio(c):.2f}" for c in ticks})
    left.series(list(enumerate(tail_max(worst))), COLOURS[0], "hard crop, worst pixel", 0)
    bounds = [(c, b) for c in range(FEATHER, len(worst)) if (b := blend_bound(worst, c)) is not None]
    left.series(bounds, COLOURS[1], "fade inside: worst-case bound", 1)
    engine = rrdb.get("engine", [])
    if engine:
        contexts = sorted({row["context"] for row in engine})
        measured = [(c, max(row["max_levels"] for row in engine if row["context"] == c)) for c in contexts]
        left.series(measured, COLOURS[2], "engine (fade inside), max", 2, dots=True)
        means = [(c, max(row["mean_levels"] for row in engine if row["context"] == c)) for c in contexts]
        left.series(means, COLOURS[4], "engine, mean", 3, dots=True)
    draw.text((60, 392), "red under the ticks: sr's window pixels at tile 256 on 512x512 over RealESRGANer's "
                         "(tile_pad 10)", fill=(200, 80, 40))
    draw.text((60, 408), "sr's default: 80 px with the fade inside (the old default, 48 + 16 on top, has the windows of 64 inside)",
              fill="black")
    right = Chart(draw, (610, 40, 1070, 340), 80, "hard crop, worst pixel vs context (px), every family")
    right.x_ticks(ticks)
    for row, (name, record) in enumerate(data.items()):
        right.series(list(enumerate(tail_max(record["worst"]))), COLOURS[row % len(COLOURS)],
                     f"{name.split(' (')[0]} (radius {record['radius']})", row)
    draw.text((610, 392), "six Set5/Set14 x4 LR photos, 128x128; EDSR/MDSR: seeded random init at the "
                          "official layouts", fill="black")
    image.save(IMAGES / "tile_cost.png")
    print(f"wrote {IMAGES / 'tile_cost.png'}")


if __name__ == "__main__":
    main()
