"""Output streamed to disk in row bands: the engine's bands, the PNG/TIFF row writers, the API's rows and the
batch runner's choice. Every streamed result is compared with the whole-canvas result of the same run."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from sr_cli.api import RunReport, UpscaleOptions, Upscaler
from sr_cli.archs.runtime import SRNet, build_module
from sr_cli.archs.srvgg import SRVGGParams
from sr_cli.batch import Job
from sr_cli.batch_run import RunSettings, run_jobs, upscale_at_bit_depth
from sr_cli.engine import EnginePlan, TileStats, upscale_bands, upscale_tensor
from sr_cli.errors import OutputError
from sr_cli.imageio import ImageMetadata, read_image, write_image, write_image_rows, writes_rows
from sr_cli.imageio.png_encoder import encode_png

CPU = torch.device("cpu")
RNG = np.random.default_rng(13)
ICC = b"\x00\x00\x02\x0cfake-but-carried-profile" * 8


def _net(scale: int = 2) -> torch.nn.Module:
    torch.manual_seed(5)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 3 * scale * scale, 3, padding=1), torch.nn.PixelShuffle(scale)).eval()


def _srvgg(scale: int = 2) -> SRNet:
    torch.manual_seed(7)
    return SRNet(build_module("srvgg", SRVGGParams(num_feat=8, num_conv=2, upscale=scale))).eval()


def _pixels(height: int, width: int, channels: int, depth: int) -> np.ndarray:
    top = 65536 if depth == 16 else 256
    return RNG.integers(0, top, (height, width, channels)).astype(np.uint16 if depth == 16 else np.uint8)


def _split_rows(pixels: np.ndarray, cuts: list[int]) -> Iterator[np.ndarray]:
    bounds = [0, *cuts, pixels.shape[0]]
    for start, stop in zip(bounds, bounds[1:], strict=False):
        yield pixels[start:stop]


# --- the engine ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tile", "multiple", "ensemble"), [(16, 1, False), (20, 4, True), (0, 1, False), (64, 4, False)])
def test_bands_partition_the_rows_and_equal_the_whole_canvas_bit_for_bit(tile: int, multiple: int, ensemble: bool) -> None:
    net = _net()
    image = torch.from_numpy(_pixels(53, 41, 3, 8).transpose(2, 0, 1).copy())
    plan = EnginePlan(scale=2, device=CPU, precision="fp32", tile=tile, overlap=6, size_multiple=multiple, ensemble=ensemble)
    whole_float = upscale_tensor(net, image.float() / 255.0, plan)
    bands = list(upscale_bands(net, image, plan))
    starts = [start for start, _ in bands]
    heights = [band.shape[-2] for _, band in bands]
    assert starts == list(np.cumsum([0, *heights[:-1]]))  # contiguous, top to bottom, no row twice
    assert sum(heights) == 106 and all(band.shape[-1] == 82 for _, band in bands)
    assert torch.equal(torch.cat([band for _, band in bands], dim=1), whole_float)
    assert torch.equal(upscale_tensor(net, image, plan), whole_float)


def test_the_caller_keeps_its_own_grad_mode_between_bands_and_may_stop_early() -> None:
    """The engine runs in inference mode, but a band is handed out in the caller's mode: what the caller
    computes between bands can take part in autograd. Stopping after the first band removes the hooks."""
    net = _net()
    image = torch.rand(3, 40, 24)
    seen = []
    bands = upscale_bands(net, image, EnginePlan(scale=2, device=CPU, precision="fp32", tile=16, overlap=4),
                          progress=lambda done, total: None)
    for _start, band in bands:
        seen.append((torch.is_inference_mode_enabled(), torch.is_grad_enabled(), band.is_inference()))
        leaf = torch.ones(1, requires_grad=True)
        (leaf * band.sum()).backward()  # ordinary autograd on the caller's side
        assert leaf.grad is not None
        if len(seen) == 2:
            break
    bands.close()
    assert seen == [(False, True, True), (False, True, True)]
    assert all(not module._forward_hooks for module in net.modules())  # the progress hooks are gone


def test_a_16_bit_input_is_read_as_value_over_65535_one_window_at_a_time() -> None:
    net = _net()
    pixels = _pixels(30, 22, 3, 16)
    image = torch.from_numpy(pixels.transpose(2, 0, 1).copy())
    reference = torch.from_numpy((pixels.astype(np.float32) / np.float32(65535)).transpose(2, 0, 1).copy())
    plan = EnginePlan(scale=2, device=CPU, precision="fp32", tile=16, overlap=4, size_multiple=4)
    assert torch.equal(upscale_tensor(net, image, plan), upscale_tensor(net, reference, plan))


def test_bands_after_an_out_of_memory_split_still_equal_the_whole_canvas() -> None:
    net = _net()

    def picky(x: torch.Tensor) -> torch.Tensor:  # a device that cannot hold windows over 40 px high
        if x.shape[-2] > 40:
            raise RuntimeError("CUDA out of memory (simulated)")
        return net(x)

    image = torch.from_numpy(_pixels(60, 24, 3, 8).transpose(2, 0, 1).copy())
    stats = TileStats()
    plan = EnginePlan(scale=2, device=CPU, precision="fp32", tile=0, overlap=4)
    bands = list(upscale_bands(picky, image, plan, stats=stats))
    assert stats.oom_splits >= 1 and len(bands) >= 2
    split = torch.cat([band for _, band in bands], dim=1)
    assert torch.equal(split, upscale_tensor(picky, image, plan))
    assert torch.allclose(split, upscale_tensor(net, image, plan), atol=1e-5)


def test_a_streamed_run_never_allocates_a_full_size_float_canvas(monkeypatch: pytest.MonkeyPatch) -> None:
    net = _net()
    image = torch.from_numpy(_pixels(160, 24, 3, 8).transpose(2, 0, 1).copy())
    largest = [0]
    for name in ("zeros", "empty"):
        real = getattr(torch, name)

        def recording(*shape: object, _real=real, **kwargs: object) -> torch.Tensor:  # noqa: ANN001
            tensor = _real(*shape, **kwargs)
            largest[0] = max(largest[0], tensor.numel())
            return tensor

        monkeypatch.setattr(torch, name, recording)
    stats = TileStats()
    rows = 0
    for _start, band in upscale_bands(net, image, EnginePlan(scale=2, device=CPU, precision="fp32", tile=16, overlap=4),
                                      stats=stats):
        rows += band.shape[-2]
    canvas = 3 * 320 * 48
    assert rows == 320
    # a band is one tile row (16 px) plus its context (4 + 2 px each side), at x2: 56 rows of 320
    assert 0 < stats.peak_band_rows <= 2 * (16 + 2 * 6) + 2
    assert largest[0] <= 3 * stats.peak_band_rows * 48 < canvas / 4


# --- the row writers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("depth", [8, 16])
def test_png_written_in_rows_decodes_to_the_pixels_and_is_the_whole_encoders_file(tmp_path: Path, channels: int, depth: int) -> None:
    pixels = _pixels(37, 29, channels, depth)
    metadata = ImageMetadata(icc=ICC, exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x00\x00\x00\x00", text={"Comment": "kept"})
    target = tmp_path / "rows.png"
    notes = write_image_rows(target, _split_rows(pixels, [1, 9, 10, 30]), width=29, height=37, channels=channels,
                             bit_depth=depth, metadata=metadata)
    assert notes == []
    decoded = read_image(target)  # Pillow (8-bit) / OpenCV (16-bit): independent decoders
    assert np.array_equal(decoded.pixels, pixels)
    assert decoded.metadata.icc == ICC and decoded.metadata.text == {"Comment": "kept"}
    assert decoded.metadata.exif is not None
    whole, _ = encode_png(pixels, icc=metadata.icc, exif=metadata.exif, text=metadata.text)
    assert target.read_bytes() == whole  # the same filters and the same deflate stream, whatever the bands
    with PILImage.open(target) as opened:
        opened.load()
        assert opened.size == (29, 37)


@pytest.mark.parametrize(("channels", "depth"), [(1, 8), (2, 8), (3, 8), (4, 8), (1, 16), (3, 16), (4, 16)])
def test_tiff_written_in_strips_decodes_to_the_pixels_with_its_profile(tmp_path: Path, channels: int, depth: int) -> None:
    pixels = _pixels(700, 33, channels, depth)  # several strips, bands that cut strips anywhere
    target = tmp_path / "rows.tiff"
    write_image_rows(target, _split_rows(pixels, [3, 250, 251, 699]), width=33, height=700, channels=channels,
                     bit_depth=depth, metadata=ImageMetadata(icc=ICC))
    decoded = read_image(target)
    assert np.array_equal(decoded.pixels, pixels)
    assert decoded.metadata.icc == ICC
    whole = tmp_path / "whole.tiff"
    write_image(whole, pixels, ImageMetadata(icc=ICC))
    assert np.array_equal(read_image(whole).pixels, decoded.pixels)


def test_a_failure_or_ctrl_c_while_rows_arrive_leaves_nothing(tmp_path: Path) -> None:
    pixels = _pixels(40, 10, 3, 8)

    def interrupted() -> Iterator[np.ndarray]:
        yield pixels[:20]
        raise KeyboardInterrupt

    for suffix in (".png", ".tiff"):
        with pytest.raises(KeyboardInterrupt):
            write_image_rows(tmp_path / f"out{suffix}", interrupted(), width=10, height=40, channels=3, bit_depth=8)
    with pytest.raises(ValueError, match="20 rows written"):
        write_image_rows(tmp_path / "short.png", iter([pixels[:20]]), width=10, height=40, channels=3, bit_depth=8)
    assert list(tmp_path.iterdir()) == []


def test_rows_are_refused_where_the_whole_writer_keeps_more_or_the_format_cannot_stream(tmp_path: Path) -> None:
    assert writes_rows("png", 8) and writes_rows("tiff", 16, ImageMetadata(exif=b"Exif\x00\x00x"))
    assert not writes_rows("tiff", 8, ImageMetadata(exif=b"Exif\x00\x00x"))  # Pillow's TIFF keeps the EXIF
    assert not writes_rows("jpeg", 8) and not writes_rows("webp", 8)
    with pytest.raises(OutputError, match="cannot be written in rows"):
        write_image_rows(tmp_path / "out.jpg", iter([]), width=1, height=1, channels=3, bit_depth=8)
    existing = tmp_path / "kept.png"
    existing.write_bytes(b"old")
    with pytest.raises(OutputError, match="exists"):
        write_image_rows(existing, iter([_pixels(2, 2, 3, 8)]), width=2, height=2, channels=3, bit_depth=8)
    assert existing.read_bytes() == b"old"


# --- the API ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "in_depth", "out_depth", "ensemble"),
                         [(3, 8, 8, False), (1, 8, 8, False), (3, 16, 16, False), (1, 16, 16, False), (3, 8, 16, False),
                          (3, 16, 8, False), (3, 8, 8, True)])
def test_upscale_rows_stack_to_the_whole_result_bit_for_bit(channels: int, in_depth: int, out_depth: int, ensemble: bool) -> None:
    options = UpscaleOptions(tile=16, overlap=6, device="cpu", ensemble=ensemble)
    upscaler = Upscaler(_srvgg(), name="tiny-srvgg", output_scale=2, options=options)
    pixels = _pixels(45, 27, channels, in_depth)
    stats = TileStats()
    bands = list(upscaler.upscale_rows(pixels, out_depth, stats=stats))
    assert len(bands) > 2 and stats.peak_band_rows < 90
    whole, _run = upscale_at_bit_depth(upscaler.upscale_with_report, pixels, out_depth, None)
    assert np.array_equal(np.concatenate(bands, axis=0), whole)
    assert bands[0].dtype == (np.uint16 if out_depth == 16 else np.uint8)


def test_what_is_not_streamed_says_why() -> None:
    upscaler = Upscaler(_srvgg(), name="tiny-srvgg", output_scale=2, options=UpscaleOptions(tile=16, device="cpu"))
    assert upscaler.why_not_streamed((8, 8, 3), np.dtype(np.uint8)) is None
    assert "alpha" in (upscaler.why_not_streamed((8, 8, 4), np.dtype(np.uint8)) or "")
    assert "8- or 16-bit" in (upscaler.why_not_streamed((8, 8, 3), np.dtype(np.float32)) or "")
    resized = Upscaler(_srvgg(), name="tiny-srvgg", output_scale=1.5, options=UpscaleOptions(tile=16, device="cpu"))
    assert "--outscale" in (resized.why_not_streamed((8, 8, 3), np.dtype(np.uint8)) or "")
    with pytest.raises(ValueError, match="alpha"):
        upscaler.upscale_rows(_pixels(8, 8, 4, 8), 8)


# --- the batch runner ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "depth", "suffix"), [(3, 8, "png"), (1, 16, "png"), (3, 16, "tiff"), (1, 8, "tiff")])
def test_a_streamed_batch_writes_the_file_the_whole_path_writes(tmp_path: Path, channels: int, depth: int, suffix: str) -> None:
    upscaler = Upscaler(_srvgg(), name="tiny-srvgg", output_scale=2, options=UpscaleOptions(tile=16, overlap=6, device="cpu"))
    source = tmp_path / f"in.{suffix}"
    write_image(source, _pixels(40, 36, channels, depth), ImageMetadata(icc=ICC))
    outputs = {}
    for label, threshold in (("streamed", 0), ("whole", 1 << 40)):
        job = Job(source, tmp_path / label / f"out.{suffix}", "tiff" if suffix == "tiff" else "png")
        calls: list[str] = []

        def whole(image: np.ndarray, progress: object, calls: list[str] = calls) -> tuple[np.ndarray, RunReport]:
            calls.append("whole")
            return upscaler.upscale_with_report(image)

        [result] = run_jobs([job], whole, RunSettings(row_upscaler=upscaler, stream_above_bytes=threshold))
        assert result.status == "done" and result.output_size == (72, 80)
        assert result.run is not None and result.run.tile == 16 and result.run.tiles == 9
        assert calls == ([] if label == "streamed" else ["whole"])
        outputs[label] = read_image(job.output)
    assert np.array_equal(outputs["streamed"].pixels, outputs["whole"].pixels)
    assert outputs["streamed"].metadata.icc == ICC


def test_a_large_result_that_cannot_stream_is_held_whole_with_a_note(tmp_path: Path) -> None:
    upscaler = Upscaler(_srvgg(), name="tiny-srvgg", output_scale=2, options=UpscaleOptions(tile=16, device="cpu"))
    rgba, rgb = tmp_path / "alpha.png", tmp_path / "plain.png"
    write_image(rgba, _pixels(20, 20, 4, 8))
    write_image(rgb, _pixels(20, 20, 3, 8))
    jobs = [Job(rgba, tmp_path / "alpha_out.png", "png"), Job(rgb, tmp_path / "plain_out.jpg", "jpeg")]
    results = run_jobs(jobs, lambda image, progress: upscaler.upscale_with_report(image),
                       RunSettings(row_upscaler=upscaler, stream_above_bytes=0))
    notes = {Path(result.input).name: result.notes for result in results}
    assert all(result.status == "done" for result in results)
    assert any("held in memory whole" in note and "alpha" in note for note in notes["alpha.png"])
    assert any("held in memory whole" in note and "JPEG" in note for note in notes["plain.png"])


def test_ctrl_c_during_a_streamed_batch_leaves_no_file_and_no_temporary(tmp_path: Path) -> None:
    upscaler = Upscaler(_srvgg(), name="tiny-srvgg", output_scale=2, options=UpscaleOptions(tile=16, device="cpu"))

    class Interrupted:
        """The real upscaler's rows, and Ctrl-C after the first band was written."""

        def output_size(self, height: int, width: int) -> tuple[int, int]:
            return upscaler.output_size(height, width)

        def why_not_streamed(self, shape: tuple[int, ...], dtype: np.dtype) -> str | None:
            return upscaler.why_not_streamed(shape, dtype)

        def upscale_rows_with_report(self, image: np.ndarray, bit_depth: int, progress: object = None,
                                     ) -> tuple[Iterator[np.ndarray], object]:
            bands, report = upscaler.upscale_rows_with_report(image, bit_depth)

            def first_then_interrupt() -> Iterator[np.ndarray]:
                yield next(bands)
                raise KeyboardInterrupt

            return first_then_interrupt(), report

    source = tmp_path / "in.png"
    write_image(source, _pixels(40, 20, 3, 8))
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_jobs([Job(source, out / "in_x2.png", "png")], lambda image, progress: upscaler.upscale_with_report(image),
                 RunSettings(row_upscaler=Interrupted(), stream_above_bytes=0))  # type: ignore[arg-type]
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("kind", ["PNG", "TIFF"])
def test_both_row_writers_refuse_a_band_that_does_not_fit(kind: str) -> None:
    """A band of another width, depth or one past the image's height is refused before anything is written."""
    import io

    from sr_cli.imageio.png_encoder import PngRowWriter
    from sr_cli.imageio.tiff_encoder import TiffStripWriter

    def writer() -> PngRowWriter | TiffStripWriter:
        if kind == "PNG":
            return PngRowWriter(lambda chunk: None, width=4, height=2, channels=3, bit_depth=8, icc=None, exif=None,
                                text={})
        return TiffStripWriter(io.BytesIO(), width=4, height=2, channels=3, bit_depth=8, icc=None)

    for band, message in ((np.zeros((1, 5, 3), np.uint8), f"a band of 5x3 uint8 does not fit a 4-wide 3-channel 8-bit {kind}"),
                          (np.zeros((1, 4, 3), np.uint16), f"a band of 4x3 uint16 does not fit a 4-wide 3-channel 8-bit {kind}"),
                          (np.zeros((3, 4, 3), np.uint8), f"3 rows written to a {kind} 2 rows high")):
        with pytest.raises(ValueError, match=message):
            writer().write_rows(band)
    fitting = writer()
    fitting.write_rows(np.zeros((2, 4, 3), np.uint8))  # the whole image in one band fits
    with pytest.raises(ValueError, match=f"3 rows written to a {kind} 2 rows high"):
        fitting.write_rows(np.zeros((1, 4, 3), np.uint8))
