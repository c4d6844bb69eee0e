"""`sr eval`: PSNR/SSIM on benchmark sets, beside the published numbers (docs/eval.md)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from sr_cli.cli.console import print_table, stderr
from sr_cli.cli.options import Device, MaxPixels, ResScale
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


def _fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    return "inf" if value == float("inf") else f"{value:.{digits}f}"


def _diff(measured: float, published: float | None, digits: int) -> str:
    if published is None or measured == float("inf"):
        return "-"
    delta = measured - published
    return f"{delta:+.{digits}f}"


def render_tables(results: list[EvalResult], per_image: bool) -> None:
    """One table per dataset: a row per (scale, model), measured beside published, and the difference."""
    from sr_cli.data.published import sources

    datasets: dict[str, list[EvalResult]] = {}
    for result in results:
        datasets.setdefault(result.dataset_label, []).append(result)
    cited = sources()
    for label, rows in datasets.items():
        protocols = ", ".join(sorted({r.protocol for r in rows}))
        used = sorted({r.published_source for r in rows if r.published_source})
        caption = "; ".join(f"{key}: {cited[key].citation}" if key in cited else key for key in used) or None
        table = Table(title=f"{escape(label)} (protocol {protocols})", title_justify="left",
                      caption=escape(caption) if caption else None, caption_justify="left")
        for column in ("scale", "model", "n", "PSNR", "SSIM", "pub PSNR", "pub SSIM", "dPSNR", "dSSIM"):
            table.add_column(column, justify="left" if column == "model" else "right", no_wrap=True)
        for r in rows:
            table.add_row(
                f"x{r.scale}", escape(r.label), str(r.n_images), _fmt(r.psnr, 2), _fmt(r.ssim, 4),
                _fmt(r.published_psnr, 2), _fmt(r.published_ssim, 4),
                _diff(r.psnr, r.published_psnr, 2), _diff(r.ssim, r.published_ssim, 4),
            )
        print_table(table)
        if per_image:
            for r in rows:
                detail = Table(title=f"{escape(label)} x{r.scale} {escape(r.label)}: per image", title_justify="left")
                for column in ("image", "PSNR", "SSIM"):
                    detail.add_column(column, justify="left" if column == "image" else "right", no_wrap=True)
                for score in r.per_image:
                    detail.add_row(escape(score.name), _fmt(score.psnr, 4), _fmt(score.ssim, 4))
                print_table(detail)


def csv_text(results: list[EvalResult]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_FIELDS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerow(result.to_record(per_image=False))
    return buffer.getvalue()


def eval_command(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help=(
        "set5 | set14 | b100 | urban100 | div2k-val (comma-separated for several), or a folder of HR images / EDSR layout."))],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help=(
        "Model names or weights files, comma-separated; 'bicubic' is built in. "
        f"Default: {','.join(DEFAULT_EVAL_MODELS)}."))] = None,
    scale: Annotated[Optional[str], typer.Option("--scale", "-s", help=(
        f"Scales, comma-separated, e.g. 2,3,4. Default: {DEFAULT_EVAL_SCALE}; "
        f"without --model, the scales {DEFAULT_MODEL} serves."))] = None,
    ensemble: Annotated[bool, typer.Option("--ensemble", help="Geometric self-ensemble (reported as EDSR+ / VDSR+; 8x slower).")] = False,
    protocol: Annotated[str, typer.Option("--protocol", help="paper | rgb-lr | edsr-pytorch | basicsr (docs/eval.md).")] = "paper",
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Folder holding <Set>/HR and <Set>/LR_bicubic/X<s> "
                                                                             "(EDSR benchmark layout).")] = None,
    save_dir: Annotated[Optional[Path], typer.Option("--save-dir", help="Write the SR outputs here (<set>/x<s>/<model>/<image>.png).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON list of records on stdout instead of tables.")] = False,
    csv_file: Annotated[Optional[Path], typer.Option("--csv", help="Also write the results as CSV to this file.")] = None,
    per_image: Annotated[bool, typer.Option("--per-image", help="Show (and put in --json) the score of every image.")] = False,
    crop: Annotated[Optional[int], typer.Option("--crop", min=0, help="Border pixels ignored on each side (default: the scale).")] = None,
    rgb: Annotated[bool, typer.Option("--rgb", help="Score RGB instead of Y, border scale+6 (the EDSR DIV2K convention).")] = False,
    device: Device = "auto",
    res_scale: ResScale = None,
    max_pixels: MaxPixels = None,
) -> None:
    """Measure PSNR/SSIM on benchmark sets, beside the published numbers."""
    from sr_cli.data.benchmarks import resolve_dataset
    from sr_cli.evaluate import EvalOptions, evaluate
    from sr_cli.imageio.budget import pixel_budget
    from sr_cli.zoo import ModelSession

    session = ModelSession()  # each weights file is read once for the whole run
    models, scales = models_and_scales(model, scale)
    options = EvalOptions(protocol=protocol, ensemble=ensemble, crop=crop, rgb=rgb, save_dir=save_dir,
                          device=device, res_scale=res_scale, budget=pixel_budget(max_pixels))
    results: list[EvalResult] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=stderr, transient=True) as bar:
        for name in split_datasets(dataset):
            fetch = bar.add_task(f"finding {escape(name)}", total=None)

            def on_fetch(done: int, total: int, task: TaskID = fetch) -> None:
                bar.update(task, completed=done, total=total)

            found = resolve_dataset(name, scales=scales, data_dir=data_dir, progress=on_fetch)
            bar.remove_task(fetch)
            for s in scales:
                for model_name in models:
                    task = bar.add_task(f"{escape(found.label)} x{s} {escape(model_name)}", total=None)

                    def on_image(done: int, total: int, task: TaskID = task) -> None:
                        bar.update(task, completed=done, total=total)

                    results.append(evaluate(found, model_name, s, options, on_image, session=session))
                    bar.remove_task(task)
    if csv_file is not None:
        from sr_cli.files.atomic import write_bytes_atomic

        write_bytes_atomic(csv_file, csv_text(results).encode("utf-8"), overwrite=True)  # a report: rewritten each run
    if json_out:
        typer.echo(json.dumps([r.to_record(per_image=per_image) for r in results], indent=2))  # plain: no rich markup
    else:
        render_tables(results, per_image)
