"""`sr weights ...` through the real entry point: outputs, exit codes, and inspect on every official layout."""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_support import CliResult, run_cli
from http_fault_server import FaultServer  # tests/ is on sys.path (pytest prepend import mode)

from sr_cli.weights import allocation
from sr_cli.weights import manifest as manifest_module

REVISION = "fedcba9876543210fedcba9876543210fedcba98"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> CliResult:
    return run_cli(capsys, argv)


# --- inspect: every key listing, synthesised ---------------------------------------------------------


def listings(keys_dir: Path) -> list[Path]:
    return sorted(p for p in keys_dir.glob("*.json") if json.loads(p.read_text())["container"] != "pickled_module")


def synthesise(listing: dict[str, Any], path: Path) -> None:
    """A checkpoint with the listing's keys and shapes in its container. Every tensor is a view of one
    shared storage, so torch.save writes it once: a 43 M-parameter layout costs a few MB, not 170."""
    shapes = {key: torch.Size(shape) for key, shape in listing["keys"].items()}
    base = torch.randn(max(shape.numel() for shape in shapes.values()))
    state = OrderedDict((key, base[: shape.numel()].view(shape)) for key, shape in shapes.items())
    container = listing["container"]
    torch.save(state if container == "state_dict" else {container: state}, path)


FAMILY_BY_ARCH = {"EDSR": "edsr", "MDSR": "mdsr", "RRDBNet": "rrdb", "SRVGGNetCompact": "srvgg"}
# The listings use the reference code's argument names; ours are BasicSR's for RRDB.
RRDB_2019_NAMES: dict[str, str] = {"nf": "num_feat", "nb": "num_block", "gc": "num_grow_ch", "in_nc": "num_in_ch", "out_nc": "num_out_ch"}


def expected_hyperparameters(listing: dict[str, Any]) -> dict[str, Any]:
    given: dict[str, Any] = dict(listing.get("hyperparameters") or {})
    if listing["arch"].startswith("SRVGGNetCompact (num_conv 16"):  # the animevideov3 copy: read from its shapes
        given = {"num_feat": 64, "num_conv": 16, "upscale": 4}
    renamed = {RRDB_2019_NAMES.get(key, key): value for key, value in given.items()}
    renamed.pop("act_type", None)  # always PReLU in SRVGGNetCompact's releases
    renamed.pop("n_colors", None)
    return renamed


def test_inspect_places_every_synthesised_official_layout(keys_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # One shared storage for all tensors: more tensor bytes than file bytes, which the reader refuses from
    # a user (weights.allocation, tested in test_reading); here the files only stand for a key layout.
    monkeypatch.setattr(allocation, "ALLOWANCE_BYTES", 1 << 30)
    found = listings(keys_dir)
    assert len(found) == 16
    for listing_path in found:
        listing = json.loads(listing_path.read_text())
        file = tmp_path / listing_path.name.removesuffix(".json")
        synthesise(listing, file)
        code, out, err = run(["weights", "inspect", "--json", str(file)], capsys)
        assert code == 0, f"{listing_path.name}: {err}"
        record = json.loads(out)
        assert {"family", "layout", "scales", "hyperparameters", "num_params"} <= set(record)
        family = FAMILY_BY_ARCH[listing["arch"].split()[0]]
        assert record["family"] == family, listing_path.name
        assert record["num_params"] == listing["num_params"], listing_path.name
        hyper = expected_hyperparameters(listing)
        for key, value in hyper.items():
            if key == "scale" and family == "mdsr":
                continue
            assert record["hyperparameters"][key] == (list(value) if isinstance(value, tuple) else value), \
                f"{listing_path.name}: {key}"
        expected_scales = hyper.get("scales") or [hyper.get("scale") or hyper.get("upscale")]
        assert record["scales"] == list(expected_scales), listing_path.name
        assert record["manifest_name"] is None  # random tensors: not the published bytes
        if listing_path.name.startswith("RRDB_"):
            assert record["layout"] == "esrgan-2019"
        file.unlink()


def test_inspect_res_scale_option(keys_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listing = json.loads((keys_dir / "edsr_baseline_x2-1bc95232.pt.json").read_text())
    file = tmp_path / "baseline.pt"
    synthesise(listing, file)
    code, out, _ = run(["weights", "inspect", "--json", "--res-scale", "0.5", str(file)], capsys)
    assert code == 0 and json.loads(out)["hyperparameters"]["res_scale"] == 0.5
    code, out, _ = run(["weights", "inspect", str(file)], capsys)
    assert code == 0 and "family           edsr" in out and "n_resblocks    16" in out


def test_inspect_real_vdsr(vdsr_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["weights", "inspect", "--json", str(vdsr_weights)], capsys)
    assert code == 0
    record = json.loads(out)
    assert record["family"] == "vdsr" and record["scales"] is None
    assert record["num_params"] == 664704 and record["hyperparameters"] == {"num_layers": 20, "num_features": 64}
    assert record["manifest_name"] == "vdsr" and record["container"] == "pickled_module"
    assert record["sha256"] == hashlib.sha256(vdsr_weights.read_bytes()).hexdigest()


def test_inspect_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["weights", "inspect", str(tmp_path / "absent.pth")], capsys)
    assert code == 3 and err.startswith("error: ") and "absent.pth" in err
    junk = tmp_path / "junk.pt"
    torch.save({"conv.weight": torch.zeros(4, 3, 3, 3)}, junk)
    code, _, err = run(["weights", "inspect", str(junk)], capsys)
    assert code == 5 and "not a supported checkpoint" in err


# --- list / import / path / verify / download ---------------------------------------------------------


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["weights", "list", "--json"], capsys)
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 19 and not any(r["cached"] for r in records)
    vdsr = next(r for r in records if r["name"] == "vdsr")
    assert vdsr["scales"] is None and vdsr["size"] == 2680962 and vdsr["license"] == "MIT"
    code, out, err = run(["weights", "list"], capsys)
    assert code == 0
    for name in ("edsr-baseline-x2", "realesr-general-wdn-x4v3", "vdsr"):
        assert name in out
    assert "prefix" in err


def test_import_path_verify(vdsr_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["weights", "path", "vdsr"], capsys)
    assert code == 3 and "sr weights download vdsr" in err

    wrong = tmp_path / "model_epoch_50.pth"
    wrong.write_bytes(vdsr_weights.read_bytes()[:-10])
    code, _, err = run(["weights", "import", "vdsr", str(wrong)], capsys)
    assert code == 6 and "nothing was imported" in err

    code, out, _ = run(["weights", "import", "vdsr", str(vdsr_weights)], capsys)
    assert code == 0
    stored = Path(out.strip().split("\t")[1])
    assert stored.read_bytes() == vdsr_weights.read_bytes()
    code, out, _ = run(["weights", "path", "vdsr"], capsys)
    assert code == 0 and Path(out.strip()) == stored
    code, out, _ = run(["weights", "list", "--json"], capsys)
    assert next(r for r in [json.loads(line) for line in out.splitlines()] if r["name"] == "vdsr")["cached"] is True

    code, out, _ = run(["weights", "verify"], capsys)
    assert code == 0 and out.startswith("ok\tvdsr\t")
    data = bytearray(stored.read_bytes())
    data[1000] ^= 1
    stored.write_bytes(bytes(data))
    code, out, err = run(["weights", "verify"], capsys)
    assert code == 6 and out.startswith("BAD\tvdsr\t") and "--remove-bad" in err
    code, out, _ = run(["weights", "verify", "--remove-bad"], capsys)
    assert code == 6 and out.startswith("REMOVED") and not stored.exists()


@pytest.fixture
def local_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vdsr_weights: Path) -> Iterator[FaultServer]:
    """The real manifest with vdsr's sources replaced: an https URL nothing answers, then a hub mirror here."""
    with FaultServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.hub_endpoint)
        server.add_hub_file("mirror/vdsr", REVISION, "model/model_epoch_50.pth", vdsr_weights.read_bytes())
        data = json.loads((Path(__file__).resolve().parents[1] / "weights_manifest.json").read_text())
        vdsr = next(m for m in data["models"] if m["name"] == "vdsr")
        vdsr["sources"] = [{"kind": "url", "url": "https://127.0.0.1:9/model_epoch_50.pth"},
                           {"kind": "hf", "repo": "mirror/vdsr", "filename": "model/model_epoch_50.pth",
                            "revision": REVISION}]
        path = tmp_path / "weights_manifest.json"
        path.write_text(json.dumps(data))
        monkeypatch.setattr(manifest_module, "manifest_path", lambda: path)
        yield server


def test_download(local_manifest: FaultServer, vdsr_weights: Path, monkeypatch: pytest.MonkeyPatch,
                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SR_OFFLINE", "1")
    code, _, err = run(["weights", "download", "vdsr"], capsys)
    assert code == 6
    assert "vdsr is not in the cache; run `sr weights download vdsr` where there is network, or pass --weights FILE" in err
    monkeypatch.delenv("SR_OFFLINE")

    code, out, err = run(["weights", "download", "vdsr", "--timeout", "2"], capsys)
    assert code == 0, err
    name, path = out.strip().split("\t")
    assert name == "vdsr" and Path(path).read_bytes() == vdsr_weights.read_bytes()

    code, _, err = run(["weights", "download"], capsys)
    assert code == 2 and "--all" in err
    code, _, err = run(["weights", "download", "edsrr"], capsys)
    assert code == 2 and "did you mean" in err
    code, _, err = run(["weights", "download", "edsr"], capsys)
    assert code == 2 and "ambiguous" in err
    monkeypatch.setenv("SR_OFFLINE", "1")
    code, _, err = run(["weights", "download", "edsr", "--scale", "4"], capsys)
    assert code == 6 and "edsr-x4 is not in the cache" in err
