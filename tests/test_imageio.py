"""imageio: every mode round-trips, and what we read agrees with independent decoders (OpenCV, Pillow)."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageCms, ImageOps, PngImagePlugin

from sr_cli.errors import InputError, OutputError
from sr_cli.imageio import ImageMetadata, read_image, write_image

RNG = np.random.default_rng(1234)
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def random_pixels(channels: int, dtype: type, height: int = 19, width: int = 13) -> np.ndarray:
    high = 65536 if dtype == np.uint16 else 256
    return RNG.integers(0, high, (height, width, channels)).astype(dtype)


def opencv_read_as_rgb(path: Path) -> np.ndarray:
    """Independent decoder: OpenCV, BGR(A) order undone, always HxWxC."""
    decoded: np.ndarray | None = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert decoded is not None, path
    if decoded.ndim == 2:
        return decoded[:, :, None]
    return decoded[:, :, [2, 1, 0, 3][: decoded.shape[2]]] if decoded.shape[2] >= 3 else decoded


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("suffix", [".png", ".tiff"])
def test_lossless_formats_round_trip_exactly(tmp_path: Path, suffix: str, dtype: type, channels: int) -> None:
    pixels = random_pixels(channels, dtype)
    path = tmp_path / f"image{suffix}"
    if suffix == ".tiff" and dtype == np.uint16 and channels == 2:
        with pytest.raises(OutputError, match="gray\\+alpha"):
            write_image(path, pixels)
        assert list(tmp_path.iterdir()) == []
        return
    write_image(path, pixels)
    image = read_image(path)
    assert image.pixels.dtype == dtype and image.pixels.shape == pixels.shape
    assert image.metadata.bit_depth == (16 if dtype == np.uint16 else 8)
    assert image.mode == {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    np.testing.assert_array_equal(image.pixels, pixels)
    # Independent decoder. OpenCV expands gray+alpha to BGRA, and premultiplies 8-bit TIFF alpha
    # (libtiff's RGBA interface) although the file says unassociated: Pillow checks those.
    if channels != 2 and not (suffix == ".tiff" and dtype == np.uint8 and channels == 4):
        np.testing.assert_array_equal(opencv_read_as_rgb(path), pixels)
    elif dtype == np.uint8:
        with PILImage.open(path) as opened:
            np.testing.assert_array_equal(np.asarray(opened).reshape(pixels.shape), pixels)


def test_pillow_reads_our_16_bit_gray_png_and_tiff(tmp_path: Path) -> None:
    pixels = random_pixels(1, np.uint16)
    for suffix in (".png", ".tiff"):
        write_image(tmp_path / f"g{suffix}", pixels)
        with PILImage.open(tmp_path / f"g{suffix}") as opened:
            # Pillow >= 10.1 opens 16-bit gray as "I;16", 10.0 widens it to 32-bit "I": the values are what count.
            assert opened.mode in ("I;16", "I")
            np.testing.assert_array_equal(np.asarray(opened), pixels[:, :, 0])


def test_bit_depth_comes_from_the_file_not_the_values(tmp_path: Path) -> None:
    small = RNG.integers(0, 256, (8, 9, 3)).astype(np.uint16)  # 16-bit file whose values fit in 8 bits
    write_image(tmp_path / "small16.png", small)
    image = read_image(tmp_path / "small16.png")
    assert image.metadata.bit_depth == 16 and image.pixels.dtype == np.uint16
    np.testing.assert_array_equal(image.pixels, small)


def test_16_bit_to_8_bit_only_format_rounds_with_a_note(tmp_path: Path) -> None:
    pixels = random_pixels(1, np.uint16)
    notes = write_image(tmp_path / "g.bmp", pixels)
    assert any("16-bit" in note for note in notes)
    expected = np.floor(pixels.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)  # independent rounding
    np.testing.assert_array_equal(read_image(tmp_path / "g.bmp").pixels, expected)
    with pytest.raises(OutputError, match="8 bits per channel"):
        write_image(tmp_path / "g.jpg", pixels, bit_depth=16)


def test_8_bit_to_16_bit_scales_by_257(tmp_path: Path) -> None:
    pixels = random_pixels(3, np.uint8)
    write_image(tmp_path / "up.png", pixels, bit_depth=16)
    np.testing.assert_array_equal(opencv_read_as_rgb(tmp_path / "up.png"), pixels.astype(np.uint16) * 257)


def test_webp_lossless_keeps_alpha_and_gray_becomes_rgb_with_a_note(tmp_path: Path) -> None:
    rgba = random_pixels(4, np.uint8)
    write_image(tmp_path / "a.webp", rgba, quality=100)
    np.testing.assert_array_equal(read_image(tmp_path / "a.webp").pixels, rgba)
    gray = random_pixels(1, np.uint8)
    notes = write_image(tmp_path / "g.webp", gray, quality=100)
    assert any("grayscale" in note for note in notes)
    np.testing.assert_array_equal(read_image(tmp_path / "g.webp").pixels, np.repeat(gray, 3, axis=2))


def test_jpeg_keeps_gray_gray_and_is_close(tmp_path: Path) -> None:
    smooth = np.tile(np.linspace(0, 255, 64, dtype=np.float64), (48, 1))[:, :, None].round().astype(np.uint8)
    write_image(tmp_path / "g.jpg", smooth)
    image = read_image(tmp_path / "g.jpg")
    assert image.mode == "L" and image.pixels.shape == smooth.shape
    assert np.abs(image.pixels.astype(int) - smooth.astype(int)).max() <= 3


@pytest.mark.parametrize("suffix", [".jpg", ".bmp"])
def test_alpha_into_a_format_without_alpha_is_refused(tmp_path: Path, suffix: str) -> None:
    with pytest.raises(OutputError, match="alpha"):
        write_image(tmp_path / f"a{suffix}", random_pixels(4, np.uint8))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".png", ".tiff", ".webp"])
def test_hard_edged_alpha_and_colour_under_it_survive(tmp_path: Path, suffix: str) -> None:
    pixels = random_pixels(4, np.uint8, 32, 32)
    pixels[:, :, 3] = np.where((np.arange(32)[:, None] // 4 + np.arange(32)[None, :] // 4) % 2 == 0, 255, 0)
    write_image(tmp_path / f"a{suffix}", pixels, quality=100)
    np.testing.assert_array_equal(read_image(tmp_path / f"a{suffix}").pixels, pixels)


# --- EXIF orientation -------------------------------------------------------------------------------

def _exif(orientation: int) -> PILImage.Exif:
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"  # Make: must survive
    return exif


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow_exif_transpose(tmp_path: Path, orientation: int) -> None:
    stored = random_pixels(3, np.uint8, 5, 3)
    path = tmp_path / "o.png"
    PILImage.fromarray(stored).save(path, exif=_exif(orientation).tobytes())
    with PILImage.open(path) as opened:
        expected = np.asarray(ImageOps.exif_transpose(opened))  # independent implementation
    image = read_image(path)
    np.testing.assert_array_equal(image.pixels, expected)
    exif = PILImage.Exif()
    assert image.metadata.exif is not None
    exif.load(image.metadata.exif)
    assert exif.get(0x0112) == 1 and exif.get(0x010F) == "TestCam"
    # Written and read again, nothing turns a second time.
    write_image(tmp_path / "again.png", image.pixels, image.metadata)
    np.testing.assert_array_equal(read_image(tmp_path / "again.png").pixels, expected)


def test_orientation_6_by_hand_and_on_16_bit_pixels(tmp_path: Path) -> None:
    """Orientation 6: the stored image is turned 90 degrees clockwise for display, so the stored
    bottom-left pixel ends up top-left. Checked on the OpenCV (16-bit) read path."""
    stored = random_pixels(3, np.uint16, 4, 7)
    path = tmp_path / "o16.png"
    write_image(path, stored, ImageMetadata(exif=_exif(6).tobytes()))
    image = read_image(path)
    assert image.pixels.shape == (7, 4, 3)
    np.testing.assert_array_equal(image.pixels[0, 0], stored[-1, 0])
    np.testing.assert_array_equal(image.pixels[0, -1], stored[0, 0])
    np.testing.assert_array_equal(image.pixels[-1, 0], stored[-1, -1])


def test_jpeg_orientation_and_exif_carried_to_other_formats(tmp_path: Path) -> None:
    stored = random_pixels(3, np.uint8, 16, 24)
    path = tmp_path / "photo.jpg"
    PILImage.fromarray(stored).save(path, exif=_exif(8).tobytes(), quality=95)
    image = read_image(path)
    assert image.pixels.shape == (24, 16, 3)
    for suffix in (".png", ".jpg", ".webp", ".tiff"):
        write_image(tmp_path / f"out{suffix}", image.pixels, image.metadata)
        with PILImage.open(tmp_path / f"out{suffix}") as written:
            assert written.getexif().get(0x010F) == "TestCam", suffix
            assert written.getexif().get(0x0112, 1) == 1, suffix


# --- ICC, text ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix,dtype", [(".png", np.uint8), (".png", np.uint16), (".jpg", np.uint8),
                                          (".webp", np.uint8), (".tiff", np.uint8), (".tiff", np.uint16)])
def test_icc_profile_bytes_are_preserved(tmp_path: Path, suffix: str, dtype: type) -> None:
    source = tmp_path / "src.png"
    PILImage.fromarray(random_pixels(3, np.uint8)).save(source, icc_profile=SRGB_ICC)
    image = read_image(source)
    assert image.metadata.icc == SRGB_ICC
    write_image(tmp_path / f"out{suffix}", image.pixels.astype(dtype), image.metadata)
    with PILImage.open(tmp_path / f"out{suffix}") as written:
        assert written.info.get("icc_profile") == SRGB_ICC  # independent reader
    assert read_image(tmp_path / f"out{suffix}").metadata.icc == SRGB_ICC


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_text_chunks_are_kept(tmp_path: Path, dtype: type) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "plain latin-1 é")
    info.add_itxt("Comment", "unicode → 超解像")
    info.add_text("Software", "zipped", zip=True)
    source = tmp_path / "text.png"
    PILImage.fromarray(random_pixels(3, np.uint8)).save(source, pnginfo=info)
    image = read_image(source)
    expected = {"Title": "plain latin-1 é", "Comment": "unicode → 超解像", "Software": "zipped"}
    assert image.metadata.text == expected
    write_image(tmp_path / "out.png", image.pixels.astype(dtype), image.metadata)
    with PILImage.open(tmp_path / "out.png") as written:
        assert isinstance(written, PngImagePlugin.PngImageFile)
        assert {key: str(value) for key, value in written.text.items()} == expected


# --- conversions on read ----------------------------------------------------------------------------

def test_palette_image_converted_with_a_note(tmp_path: Path) -> None:
    rgb = random_pixels(3, np.uint8, 8, 8)
    PILImage.fromarray(rgb).quantize(16).save(tmp_path / "p.png")
    with PILImage.open(tmp_path / "p.png") as opened:
        expected = np.asarray(opened.convert("RGB"))
    image = read_image(tmp_path / "p.png")
    assert image.mode == "RGB" and any("palette" in note for note in image.notes)
    np.testing.assert_array_equal(image.pixels, expected)


def test_palette_with_transparency_becomes_rgba(tmp_path: Path) -> None:
    palette_image = PILImage.new("P", (4, 4), 0)
    palette_image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette_image.putpixel((1, 1), 1)
    palette_image.save(tmp_path / "t.png", transparency=0)
    image = read_image(tmp_path / "t.png")
    assert image.mode == "RGBA"
    assert image.pixels[0, 0, 3] == 0 and tuple(image.pixels[1, 1]) == (0, 255, 0, 255)


def test_cmyk_jpeg_converted_with_a_note(tmp_path: Path) -> None:
    PILImage.new("CMYK", (6, 5), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)  # pure red ink
    image = read_image(tmp_path / "c.jpg")
    assert image.mode == "RGB" and any("CMYK" in note for note in image.notes)
    red, green, blue = image.pixels[2, 2].astype(int)
    assert red > 240 and green < 15 and blue < 15


def test_animated_gif_gives_first_frame_and_a_warning(tmp_path: Path) -> None:
    frames = [PILImage.new("RGB", (5, 4), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    image = read_image(tmp_path / "anim.gif")
    assert any("2 frames" in note for note in image.notes)
    assert tuple(image.pixels[0, 0]) == (255, 0, 0)


def test_one_bit_image_reads_as_gray(tmp_path: Path) -> None:
    PILImage.new("1", (5, 4), 1).save(tmp_path / "bw.png")
    image = read_image(tmp_path / "bw.png")
    assert image.mode == "L" and image.pixels.max() == 255


def test_damaged_and_missing_files_raise_input_error_naming_them(tmp_path: Path) -> None:
    write_image(tmp_path / "whole.png", random_pixels(3, np.uint8, 64, 64))
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    for name in ("cut.png", "junk.png", "absent.png"):
        with pytest.raises(InputError, match=name):
            read_image(tmp_path / name)


def test_non_ascii_path_round_trips_16_bit(tmp_path: Path) -> None:
    pixels = random_pixels(3, np.uint16)
    path = tmp_path / "fotó 超.png"
    write_image(path, pixels)
    np.testing.assert_array_equal(read_image(path).pixels, pixels)


# --- atomic writes ------------------------------------------------------------------------------------

def test_crash_mid_write_leaves_no_partial_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_fsync(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OutputError, match="No space left"):
        write_image(tmp_path / "out.png", random_pixels(3, np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_write_keeps_the_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"previous complete file")

    def interrupted_replace(source: object, destination: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        write_image(target, random_pixels(3, np.uint8), overwrite=True)
    assert [path.name for path in tmp_path.iterdir()] == ["out.png"]
    assert target.read_bytes() == b"previous complete file"


def test_write_into_a_missing_folder_is_an_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        write_image(tmp_path / "nope" / "out.png", random_pixels(3, np.uint8))


def test_unknown_suffix_and_bad_arrays_are_refused(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="suffix"):
        write_image(tmp_path / "out.xyz", random_pixels(3, np.uint8))
    with pytest.raises(OutputError, match="float32"):
        write_image(tmp_path / "out.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(OutputError, match="shape"):
        write_image(tmp_path / "out.png", np.zeros((4, 4, 5), np.uint8))


# Pillow's own transposes, applied to the stored pixels: an implementation independent of ours.
PILLOW_TRANSPOSE = {1: None, 2: PILImage.Transpose.FLIP_LEFT_RIGHT, 3: PILImage.Transpose.ROTATE_180,
                    4: PILImage.Transpose.FLIP_TOP_BOTTOM, 5: PILImage.Transpose.TRANSPOSE,
                    6: PILImage.Transpose.ROTATE_270, 7: PILImage.Transpose.TRANSVERSE, 8: PILImage.Transpose.ROTATE_90}


def upright_by_pillow(stored: np.ndarray, orientation: int) -> np.ndarray:
    method = PILLOW_TRANSPOSE[orientation]
    planes = [PILImage.fromarray(stored[:, :, channel]) for channel in range(stored.shape[2])]
    turned = [plane if method is None else plane.transpose(method) for plane in planes]
    return np.stack([np.asarray(plane) for plane in turned], axis=2)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("dtype,channels", [(np.uint8, 3), (np.uint8, 1), (np.uint16, 1)])
def test_tiff_orientation_is_applied_exactly_once(tmp_path: Path, orientation: int, dtype: type, channels: int) -> None:
    """Pillow 13 and OpenCV rotate TIFFs themselves on decode; older Pillow does not. Whatever the
    decoder does, the result must be the stored pixels turned once."""
    stored = random_pixels(channels, dtype, 4, 7)
    source = PILImage.fromarray(stored[:, :, 0] if channels == 1 else stored)
    source.save(tmp_path / "o.tiff", tiffinfo={0x0112: orientation})
    image = read_image(tmp_path / "o.tiff")
    np.testing.assert_array_equal(image.pixels, upright_by_pillow(stored, orientation))
    assert image.metadata.bit_depth == (16 if dtype == np.uint16 else 8)


def test_png_colour_key_transparency_becomes_alpha(tmp_path: Path) -> None:
    pixels = np.zeros((3, 4, 3), np.uint8)
    pixels[1, 2] = (10, 20, 30)
    PILImage.fromarray(pixels).save(tmp_path / "key.png", transparency=(0, 0, 0))
    image = read_image(tmp_path / "key.png")
    assert image.mode == "RGBA" and any("colour key" in note for note in image.notes)
    expected_alpha = np.zeros((3, 4), np.uint8)
    expected_alpha[1, 2] = 255
    np.testing.assert_array_equal(image.pixels[:, :, 3], expected_alpha)
