"""weights_manifest.json: validation rejects every kind of bad field; the shipped file is consistent
with the architectures, the shared key listings and the known checksums."""
from __future__ import annotations

import copy
import hashlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch

from sr_cli.archs.runtime import build_module
from sr_cli.errors import ManifestError
from sr_cli.weights.bundled import bundled_dir
from sr_cli.weights.manifest import (
    BundledSource,
    ManifestEntry,
    load_manifest,
    manifest_path,
    parse_manifest,
    read_manifest,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return json.loads((REPO_ROOT / "weights_manifest.json").read_text())


def is_ncnn_conversion(entry: ManifestEntry) -> bool:
    """An entry whose file sr makes from the authors' ncnn export (no upstream listing can know its hash)."""
    return entry.ncnn is not None and entry.filename.endswith(".safetensors")


def rejected(data: dict[str, Any]) -> str:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data, origin="m.json")
    return str(caught.value)


def test_the_shipped_manifest_reads(raw: dict[str, Any]) -> None:
    manifest = parse_manifest(raw)
    assert len(manifest.entries) == len(raw["models"]) == 19
    assert manifest_path().name == "weights_manifest.json"
    assert load_manifest().names() == manifest.names()


def test_expected_models_are_present() -> None:
    names = set(load_manifest().names())
    assert names == {"edsr-baseline-x2", "edsr-baseline-x3", "edsr-baseline-x4", "edsr-x2", "edsr-x3", "edsr-x4",
                     "mdsr-baseline", "mdsr", "esrgan", "esrgan-psnr", "esrgan-basicsr", "realesrgan-x4plus",
                     "realesrnet-x4plus", "realesrgan-x2plus", "realesr-general-x4v3", "realesr-general-wdn-x4v3",
                     "vdsr", "realesrgan-x4plus-anime", "realesr-animevideov3"}


@pytest.mark.parametrize("mutate, path, words", [
    (lambda d: d["models"][0].update(colour="red"), "models[0].colour", "unknown field"),
    (lambda d: d["models"][1].update(sha256="ABF2" + "0" * 60), "models[1].sha256", "64 lowercase hex"),
    (lambda d: d["models"][1].update(sha256="abc"), "models[1].sha256", "64 lowercase hex"),
    (lambda d: d["models"][2].update(name="edsr-baseline-x2"), "models[2].name", "duplicate name"),
    (lambda d: d["models"][0].update(family="srcnn"), "models[0].family", "not one of"),
    (lambda d: d["models"][8]["sources"][0].update(revision="bc7c483"), "models[8].sources[0].revision", "40-hex"),
    (lambda d: d["models"][0]["sources"][0].update(url="http://cv.snu.ac.kr/x.pt"), "models[0].sources[0].url", "https"),
    (lambda d: d["models"][0]["sources"][0].update(kind="ftp"), "models[0].sources[0].kind", "not one of"),
    (lambda d: d["models"][0].update(size="5 MB"), "models[0].size", "integer"),
    (lambda d: d["models"][0].update(size=True), "models[0].size", "integer"),
    (lambda d: d["models"][0]["hyperparameters"].pop("n_feats"), "models[0].hyperparameters.n_feats", "missing"),
    (lambda d: d["models"][0]["hyperparameters"].update(depth=3), "models[0].hyperparameters.depth", "unknown field"),
    (lambda d: d["models"][0].update(scales=[3]), "models[0].scales", "contradicts"),
    (lambda d: d["models"][0].update(sha256=None), "models[0].sha256", "sha256_prefix"),
    (lambda d: d["models"][3].update(sha256_prefix="0EDF"), "models[3].sha256_prefix", "lowercase hex"),
    (lambda d: d["models"][0].update(variant="sharp"), "models[0].variant", "not one of"),
    (lambda d: d["models"][8]["pair"].update(name="vdsr"), "models[8].pair.name", "another architecture"),
    (lambda d: d["models"][9].update(pair=None), "models[8].pair.name", "does not name"),
    (lambda d: d["models"][0].update(aliases=["vdsr"]), "models[0].aliases", "also a model name"),
    (lambda d: d["models"][0].update(filename="../x.pt"), "models[0].filename", "bare file name"),
    (lambda d: d["models"][0].update(sources=[]), "models[0].sources", "at least one"),
    (lambda d: d["models"][0].pop("license"), "models[0].license", "missing"),
    (lambda d: d.update(version=2), "version", "not supported"),
])
def test_validation_names_the_bad_field(raw: dict[str, Any], mutate: Any, path: str, words: str) -> None:
    data = copy.deepcopy(raw)
    mutate(data)
    message = rejected(data)
    assert message.startswith(f"m.json: {path}: "), message
    assert re.search(words, message), message


def test_unreadable_manifest_files(tmp_path: Path) -> None:
    bad = tmp_path / "m.json"
    bad.write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON at line 1"):
        read_manifest(bad)
    with pytest.raises(ManifestError, match="cannot read"):
        read_manifest(tmp_path / "absent.json")


@cache
def built_num_params(name: str) -> int:
    """Parameters (all state_dict tensors) of the model built from the entry's hyperparameters.
    Built on the meta device: shapes only, no memory, no random init time."""
    entry = load_manifest().get(name)
    assert entry is not None
    with torch.device("meta"):
        module = build_module(entry.family, entry.params)
    return sum(t.numel() for t in module.state_dict().values())


def test_every_entry_builds_a_model_of_the_stated_size() -> None:
    for entry in load_manifest().entries:
        assert entry.num_params == built_num_params(entry.name), entry.name


def test_entries_agree_with_the_shared_key_listings(keys_dir: Path) -> None:
    checked = 0
    for entry in load_manifest().entries:
        if is_ncnn_conversion(entry):
            continue  # sr's own file, checked against the authors' ncnn export in test_ncnn.py
        listing_path = keys_dir / f"{entry.filename}.json"
        if not listing_path.is_file():
            assert entry.name == "realesrgan-x2plus", f"no key listing for {entry.filename}"
            continue
        listing = json.loads(listing_path.read_text())
        assert entry.num_params == listing["num_params"], entry.name
        assert built_num_params(entry.name) == listing["num_params"], entry.name
        known = listing.get("known_file") or {}
        if entry.name != "vdsr" or known:  # every listing with a known file agrees on hash and size
            if known.get("sha256"):
                assert entry.sha256 == known["sha256"], entry.name
            if known.get("size_bytes"):
                assert entry.size == known["size_bytes"], entry.name
        checked += 1
    assert checked == 16


def test_entries_agree_with_known_checksums(shared_dir: Path) -> None:
    known = json.loads((shared_dir / "weights" / "known_checksums.json").read_text())
    for entry in load_manifest().entries:
        if is_ncnn_conversion(entry):
            continue  # sr's own file, checked against the authors' ncnn export in test_ncnn.py
        record = known.get(entry.filename)
        if record is None:  # the files only a hash prefix is known of are not in known_checksums.json
            assert entry.sha256 is None, entry.name
            continue
        if entry.sha256 is not None:
            assert entry.sha256 == record["sha256"], entry.name
        else:
            assert "sha256" not in record or record["sha256"] is None or record["sha256"].startswith(entry.sha256_prefix)
        if record.get("size_bytes") is not None:
            assert entry.size == record["size_bytes"], entry.name


def test_prefix_only_entries_are_named_by_their_prefix() -> None:
    prefix_only = [e for e in load_manifest().entries if e.sha256 is None]
    assert {e.name for e in prefix_only} == {"edsr-x2", "edsr-x3", "mdsr"}
    for entry in prefix_only:
        assert entry.sha256_prefix is not None and entry.filename.endswith(f"-{entry.sha256_prefix}.pt")
        assert entry.verification == "prefix"
    for entry in load_manifest().entries:  # hashed names (torch.hub convention) agree with the full sha256
        match = re.search(r"-([0-9a-f]{8})\.pth?$", entry.filename)
        if match and entry.sha256 is not None:
            assert entry.sha256.startswith(match.group(1)), entry.name


def test_sources_are_pinned_and_the_pairs_match() -> None:
    manifest = load_manifest()
    # Pinning (40-hex revisions, https only, 64-hex ncnn digests) is the parser's job; test_validation_names_
    # the_bad_field shows it refuses the rest. What no parser can see: a bundled file that is not the one listed,
    # and one model's source pasted into another entry.
    owners: dict[str, str] = {}
    for entry in manifest.entries:
        for source in entry.sources:
            if isinstance(source, BundledSource):  # shipped in the package: the file itself must match
                assert (bundled_dir() / source.filename).stat().st_size == source.size, source.filename
            owner = owners.setdefault(repr(source), entry.name)
            assert owner == entry.name, f"{source!r} is a source of both {owner} and {entry.name}"
    pairs = {(e.name, e.pair.name, e.pair.kind) for e in manifest.entries if e.pair is not None}
    assert pairs == {("esrgan", "esrgan-psnr", "interpolation"), ("esrgan-psnr", "esrgan", "interpolation"),
                     ("realesrgan-x4plus", "realesrnet-x4plus", "interpolation"),
                     ("realesrnet-x4plus", "realesrgan-x4plus", "interpolation"),
                     ("realesr-general-x4v3", "realesr-general-wdn-x4v3", "denoise"),
                     ("realesr-general-wdn-x4v3", "realesr-general-x4v3", "denoise")}
    variants = {e.name: e.variant for e in manifest.entries if e.pair is not None and e.pair.kind == "interpolation"}
    assert variants == {"esrgan": "gan", "esrgan-psnr": "psnr", "realesrgan-x4plus": "gan", "realesrnet-x4plus": "psnr"}


def test_res_scale_and_published_metrics() -> None:
    manifest = load_manifest()
    assert manifest.get("edsr-x4").res_scale == 0.1  # type: ignore[union-attr]
    assert manifest.get("edsr-baseline-x4").res_scale == 1.0  # type: ignore[union-attr]
    assert manifest.get("esrgan").res_scale is None  # type: ignore[union-attr]
    vdsr = manifest.get("vdsr")
    assert vdsr is not None
    set5 = {(m.scale, m.psnr) for m in vdsr.published_metrics if m.dataset == "Set5" and "Table 3" in m.source}
    assert set5 == {(2, 37.53), (3, 33.66), (4, 31.35)}
    repo = {(m.scale, m.psnr) for m in vdsr.published_metrics if "README" in m.source}
    assert repo == {(2, 37.65), (3, 33.77), (4, 31.45)}


def test_the_wheel_build_hook_ships_the_manifest(tmp_path: Path) -> None:
    """setup.py's build_py hook copies the root manifest into the package (what a wheel install reads)."""
    import subprocess
    import sys
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)],
                           cwd=REPO_ROOT, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    shipped = tmp_path / "sr_cli" / "weights" / "weights_manifest.json"
    assert shipped.read_bytes() == (REPO_ROOT / "weights_manifest.json").read_bytes()
    assert read_manifest(shipped).names() == load_manifest().names()


@pytest.mark.slow
def test_a_non_editable_install_reads_its_own_copy(tmp_path: Path) -> None:
    """Build the wheel, install it into a bare folder and import sr from there: the manifest is found
    inside the installed package, not in a repository checkout."""
    import subprocess
    import sys

    wheels, target = tmp_path / "wheels", tmp_path / "site"
    # a copy of the tracked tree, so the build neither writes into the checkout nor sees stray files
    tree = tmp_path / "src"
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=REPO_ROOT, capture_output=True)
    if archive.returncode != 0:
        pytest.skip("not a git checkout: cannot take the tracked tree to build a wheel from")
    tree.mkdir()
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    (tree / "weights_manifest.json").write_bytes((REPO_ROOT / "weights_manifest.json").read_bytes())
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(tree)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("sr_cli-*.whl")
    import zipfile
    shipped = set(zipfile.ZipFile(wheel).namelist())
    bundled_sources = [e.bundled for e in load_manifest().entries if e.bundled is not None]
    assert bundled_sources and "sr_cli/bundled/LICENSE" in shipped
    for source in bundled_sources:  # the bundled models travel inside the wheel
        assert f"sr_cli/bundled/{source.filename}" in shipped, source.filename
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import sr_cli; "
             "from sr_cli.weights.manifest import manifest_path, load_manifest; "
             "print(sr_cli.__file__); print(manifest_path()); print(len(load_manifest().entries))")
    ran = subprocess.run([sys.executable, "-c", probe, str(target)], cwd=tmp_path, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    package_file, manifest_file, count = ran.stdout.split()
    assert Path(package_file).is_relative_to(target) and Path(manifest_file).is_relative_to(target)
    assert int(count) == len(load_manifest().entries)
    for source in bundled_sources:
        installed = target / "sr_cli" / "bundled" / source.filename
        assert hashlib.sha256(installed.read_bytes()).hexdigest() == source.sha256, source.filename


def test_docs_list_every_model() -> None:
    text = (REPO_ROOT / "docs" / "models.md").read_text()
    for entry in load_manifest().entries:
        assert f"| `{entry.name}` |" in text, f"docs/models.md lacks a row for {entry.name}"
