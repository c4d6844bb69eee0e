"""`sr eval`: PSNR/SSIM on benchmark sets, beside the published numbers (docs/eval.md)."""
from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from sr_cli.cli.console import detail, json_line, note, print_table, stdout
from sr_cli.cli.options import Device, Json, MaxPixels, Quiet, ResScale, Verbose
from sr_cli.cli.progress import add_bar, progress_bars
from sr_cli.defaults import DEFAULT_EVAL_MODELS, DEFAULT_EVAL_SCALE, DEFAULT_MODEL
from sr_cli.errors import UsageError

if TYPE_CHECKING:  # torch loads only when the command runs
    from sr_cli.evaluate import EvalResult

CSV_FIELDS = ("dataset", "model", "scale", "protocol", "ensemble", "psnr", "ssim", "n_images",
              "published_psnr", "published_ssim", "published_source")


def parse_scales(value: str) -> tuple[int, ...]:
    """'2,3,4' -> (2, 3, 4); integers >= 2, no duplicates."""
    scales: list[int] = []
    for part in value.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 2:
            raise UsageError(f"--scale {value}: give integer scales of 2 or more, comma-separated (e.g. 2,3,4)")
        if int(part) not in scales:
            scales.append(int(part))
    return tuple(scales)


def models_and_scales(model: str | None, scale: str | None) -> tuple[list[str], tuple[int, ...]]:
    """--model/--scale as given; without --model, the default model beside bicubic at the scales it serves
    (a --scale it does not serve is refused before anything runs); without --scale, DEFAULT_EVAL_SCALE."""
    if model is not None:
        return parse_list(model, "--model"), parse_scales(scale) if scale is not None else (DEFAULT_EVAL_SCALE,)
    from sr_cli import zoo

    served = zoo.resolve(DEFAULT_MODEL).scales
    scales = parse_scales(scale) if scale is not None else tuple(served) if served is not None else (2, 3, 4)
    missing = [s for s in scales if served is not None and s not in served]
    if missing:
        raise UsageError(f"the default model {DEFAULT_MODEL} serves {', '.join(f'x{s}' for s in served or ())} only, "
                         f"not {', '.join(f'x{s}' for s in missing)}; name a model for those "
                         f"(the EDSR paper's rows: --model edsr --scale 2,3,4)")
    return list(DEFAULT_EVAL_MODELS), scales


def parse_list(value: str, option: str) -> list[str]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise UsageError(f"{option} is empty; give at least one value")
    return items


def split_datasets(value: str) -> list[str]:
    """Comma-separated known set names, or one path (paths may contain commas)."""
    from sr_cli.data.benchmarks import dataset_key

    parts = [part.strip().lower() for part in value.split(",")]
    if len(parts) > 1 and all(dataset_key(part) is not None for part in parts):
        return parts
    return [value]


# Decimals shown: the measured PSNR and its difference with 4 where papers print 2, so a difference of
# 0.004 dB is visible and a measured 33.6614 is not mistaken for the published 33.66; SSIM with 4, as printed.
PSNR_DIGITS = 4
SSIM_DIGITS = 4
PUBLISHED_PSNR_DIGITS = 2

_DATA = "Data"
_MODELS = "Models"
_MEASURE = "Measurement"
_OUTPUT = "Output"


def fixed(value: float | None, digits: int, *, signed: bool = False) -> str:
    """`value` with `digits` decimals ("-" when there is none, "inf" for identical images). A value that
    rounds to zero is "0.0000" whatever its sign: "-0.0000" reads as a loss that is not there."""
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return f"{0.0:.{digits}f}" if float(text) == 0.0 else text


def difference(measured: float, published: float | None, digits: int) -> str:
    if published is None or math.isinf(measured):
        return "-"
    return fixed(measured - published, digits, signed=True)


def results_table(label: str, rows: list[EvalResult], width: int) -> Table:
    """A dataset's table: a row per (scale, model), measured beside published and the difference. Fits 80
    columns for model names up to ~18 characters; a longer name folds inside its cell when `width` leaves
    it MIN_FOLDED_NAME characters a line, else the table is printed wider than `width` (numbers are never cut)."""
    from sr_cli.data.published import sources

    protocols = ", ".join(sorted({r.protocol for r in rows}))
    counts = sorted({r.n_images for r in rows})
    one_count = len(counts) == 1
    images = f"{counts[0]} image{'s' if counts[0] != 1 else ''}, " if one_count else ""
    cited = sources()
    used = sorted({r.published_source for r in rows if r.published_source})
    caption = "; ".join(f"{key}: {cited[key].citation}" if key in cited else key for key in used) or None
    table = Table(title=f"{escape(label)}: {images}protocol {protocols}", title_justify="left",
                  caption=escape(caption) if caption else None, caption_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    columns = ["scale", "model", *([] if one_count else ["n"]), "PSNR", "SSIM", "pub PSNR", "pub SSIM", "dPSNR", "dSSIM"]
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right", no_wrap=True)
    for r in rows:
        table.add_row(
            f"x{r.scale}", escape(r.label), *([] if one_count else [str(r.n_images)]),
            fixed(r.psnr, PSNR_DIGITS), fixed(r.ssim, SSIM_DIGITS),
            fixed(r.published_psnr, PUBLISHED_PSNR_DIGITS), fixed(r.published_ssim, SSIM_DIGITS),
            difference(r.psnr, r.published_psnr, PSNR_DIGITS), difference(r.ssim, r.published_ssim, SSIM_DIGITS),
        )
    _fold_if_it_fits(table, columns.index("model"), width)
    return table


MIN_FOLDED_NAME = 12  # narrower, a folded name is harder to read than a table wider than the terminal


def _fold_if_it_fits(table: Table, index: int, width: int) -> None:
    """Let the text column `index` fold inside its cells when the table is wider than `width` and the
    column keeps at least MIN_FOLDED_NAME characters a line there (print_table then prints it at `width`)."""
    from rich.console import Console
    from rich.measure import Measurement

    probe = Console(width=10_000, file=io.StringIO())
    natural = Measurement.get(probe, probe.options, table).maximum
    column = table.columns[index]
    longest = max(len(str(cell)) for cell in [column.header, *column.cells])
    if natural > width and width - (natural - longest) >= MIN_FOLDED_NAME:
        column.no_wrap = False
        column.overflow = "fold"


def per_image_table(label: str, result: EvalResult) -> Table:
    table = Table(title=f"{escape(label)} x{result.scale} {escape(result.label)}: per image", title_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("image", justify="left", overflow="fold")
    for column in ("PSNR", "SSIM"):
        table.add_column(column, justify="right", no_wrap=True)
    for score in result.per_image:
        table.add_row(escape(score.name), fixed(score.psnr, PSNR_DIGITS), fixed(score.ssim, SSIM_DIGITS))
    return table


def render_tables(results: list[EvalResult], per_image: bool) -> None:
    """One table per dataset (and, with --per-image, one per row), on stdout."""
    datasets: dict[str, list[EvalResult]] = {}
    for result in results:
        datasets.setdefault(result.dataset_label, []).append(result)
    for label, rows in datasets.items():
        print_table(results_table(label, rows, stdout.width))
        if per_image:
            for r in rows:
                print_table(per_image_table(label, r))


def csv_text(results: list[EvalResult]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_FIELDS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerow(result.to_record())
    return buffer.getvalue()


def json_record(record: dict[str, object]) -> dict[str, object]:
    """The shape of every `sr` JSON line: "command" and "status" first, then the result's own keys."""
    return {"command": "eval", "status": "ok", **record}


def eval_command(
    dataset: Annotated[str, typer.Option("--dataset", "-d", rich_help_panel=_DATA, show_default=False, help=(
        "set5 | set14 | b100 | urban100 | div2k-val (comma-separated for several), or a folder of HR "
        "images / EDSR layout."))],
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", rich_help_panel=_DATA, help=(
        "Folder holding <Set>/HR and <Set>/LR_bicubic/X<s> (EDSR benchmark layout); without it, the cache "
        "or a download."))] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", rich_help_panel=_MODELS, help=(
        "Model names or weights files, comma-separated; 'bicubic' is built in. "
        f"Default: {','.join(DEFAULT_EVAL_MODELS)}."))] = None,
    scale: Annotated[Optional[str], typer.Option("--scale", "-s", rich_help_panel=_MODELS, help=(
        f"Scales, comma-separated, e.g. 2,3,4. Default: {DEFAULT_EVAL_SCALE}; "
        f"without --model, the scales {DEFAULT_MODEL} serves."))] = None,
    ensemble: Annotated[bool, typer.Option("--ensemble", rich_help_panel=_MODELS, help=(
        "Geometric self-ensemble (reported as EDSR+ / VDSR+; 8x slower)."))] = False,
    protocol: Annotated[str, typer.Option("--protocol", rich_help_panel=_MEASURE, help=(
        "paper | rgb-lr | edsr-pytorch | basicsr (docs/eval.md)."))] = "paper",
    crop: Annotated[Optional[int], typer.Option("--crop", rich_help_panel=_MEASURE, help=(
        "Border pixels ignored on each side (default: the scale)."))] = None,
    rgb: Annotated[bool, typer.Option("--rgb", rich_help_panel=_MEASURE, help=(
        "Score RGB instead of Y, border scale+6 (the EDSR DIV2K convention)."))] = False,
    csv_file: Annotated[Optional[Path], typer.Option("--csv", rich_help_panel=_OUTPUT, help=(
        "Also write the results as CSV to this file (rewritten each run)."))] = None,
    per_image: Annotated[bool, typer.Option("--per-image", rich_help_panel=_OUTPUT, help=(
        "Show (and give as --json records) the score of every image."))] = False,
    save_dir: Annotated[Optional[Path], typer.Option("--save-dir", rich_help_panel=_OUTPUT, help=(
        "Write the SR outputs here (<set>/x<s>/<model>/<image>.png)."))] = None,
    json_out: Json = False,
    device: Device = "auto",
    res_scale: ResScale = None,
    max_pixels: MaxPixels = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Measure PSNR/SSIM on benchmark sets, beside the published numbers.

    Examples:
      sr eval --dataset set5
      sr eval -d set5,set14 -m bicubic,vdsr -s 2,3,4
      sr eval -d set5 -m bicubic -s 4 --json > set5.jsonl
    """
    from sr_cli.data.benchmarks import resolve_dataset
    from sr_cli.evaluate import EvalJob, EvalOptions, evaluate_jobs, image_count, plan_jobs
    from sr_cli.imageio.budget import pixel_budget
    from sr_cli.zoo import ModelSession

    started = time.perf_counter()
    session = ModelSession()  # each weights file is read once for the whole run
    models, scales = models_and_scales(model, scale)
    options = EvalOptions(protocol=protocol, ensemble=ensemble, crop=crop, rgb=rgb, save_dir=save_dir,
                          device=device, res_scale=res_scale, budget=pixel_budget(max_pixels))
    results: list[EvalResult] = []
    with progress_bars() as bars:
        datasets = []
        for name in split_datasets(dataset):
            fetch, on_fetch = add_bar(bars, f"finding {name}", kind="bytes")
            datasets.append(resolve_dataset(name, scales=scales, data_dir=data_dir, progress=on_fetch))
            bars.remove_task(fetch)
            detail(f"{datasets[-1].label}: {datasets[-1].hr_dir}")
        jobs = plan_jobs(datasets, models, scales)
        task, on_images = add_bar(bars, "eval", unit="img", total=image_count(jobs))

        def on_start(job: EvalJob) -> None:
            name = Path(job.model).stem if Path(job.model).suffix else job.model  # the bar has ~24 columns for it
            bars.update(task, description=escape(f"{job.dataset.label} x{job.scale} {name}"))

        for result in evaluate_jobs(jobs, options, on_images, on_start=on_start, session=session):
            results.append(result)
            detail(_resolved(result))
            if json_out:  # streamed: a script sees each row as it is measured
                for record in result.image_records() if per_image else []:
                    json_line(json_record(record))
                json_line(json_record(result.to_record()))
    if csv_file is not None:
        from sr_cli.files.atomic import write_bytes_atomic

        write_bytes_atomic(csv_file, csv_text(results).encode("utf-8"), overwrite=True)  # a report: rewritten each run
    if not json_out:
        render_tables(results, per_image)
    note(_summary(results, time.perf_counter() - started, csv_file))


def _resolved(result: EvalResult) -> str:
    """What -v says of each row: the weights that ran (file, sha256), where, and how long it took."""
    if result.weights_file is None:
        ran = "MATLAB bicubic"
    else:
        ran = f"{result.weights_file} (sha256 {(result.weights_sha256 or '?')[:12]}) on {result.device}"
    return f"{result.dataset_label} x{result.scale} {result.label}: {ran}, {result.n_images} images, {result.seconds:.1f} s"


def _summary(results: list[EvalResult], seconds: float, csv_file: Path | None) -> str:
    from sr_cli.cli.progress import clock

    images = sum(r.n_images for r in results)
    devices = sorted({r.device for r in results if r.device is not None})
    protocols = sorted({r.protocol for r in results})
    where = f" on {', '.join(devices)}" if devices else ""
    written = f"; CSV {csv_file}" if csv_file is not None else ""
    return (f"evaluated {len(results)} row{'s' if len(results) != 1 else ''} ({images} images) in {clock(seconds)}"
            f"{where}, protocol {', '.join(protocols)}{written}")
