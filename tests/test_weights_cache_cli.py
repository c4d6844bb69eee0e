"""`sr weights list` sizes/aliases/total, `rm` and `prune`, on the per-test cache conftest sets up (never the
user's): what is removed, what never is, dry runs, confirmation, JSON lines."""
from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

import pytest
from cli_support import run_cli

from sr_cli.cli.weights_cmd import human_size
from sr_cli.weights.bundled import bundled_dir
from sr_cli.weights.cache import entry_path, lock_path, part_path, weights_dir
from sr_cli.weights.manifest import ManifestEntry, load_manifest


def entry(name: str) -> ManifestEntry:
    found = load_manifest().get(name)
    assert found is not None
    return found


def cache_file(name: str, size: int | None = None, digest: str | None = None) -> Path:
    """A file where sr's cache keeps `name`; the right size unless told (the cheap check is by size)."""
    item = entry(name)
    path = entry_path(digest or item.sha256 or "", item.filename)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * (size if size is not None else item.size or 1000))
    return path


def bundled_state() -> dict[str, int]:
    return {path.name: path.stat().st_size for path in bundled_dir().iterdir()}


def table_rows(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    header = lines[0].split()
    return {line.split()[0]: line.split() for line in lines[1:] if line and not line.startswith("total:")} | {
        "header": header}


def test_list_shows_a_size_for_every_entry_aliases_and_a_total(capsys: pytest.CaptureFixture[str]) -> None:
    edsr_x2 = entry("edsr-x2")
    assert edsr_x2.size is None and edsr_x2.sha256_prefix is not None
    stored = cache_file("edsr-x2", size=1234, digest=edsr_x2.sha256_prefix.ljust(64, "0"))
    code, out, _ = run_cli(capsys, ["weights", "list"])
    assert code == 0
    assert "?" not in out
    rows = table_rows(out)
    assert rows["header"] == ["name", "aliases", "family", "scales", "size", "cached", "licence"]
    manifest = load_manifest().entries
    for item in manifest:
        row = " ".join(rows[item.name])
        if item.size is not None:
            expected = human_size(item.size)
        elif item.name == "edsr-x2":
            expected = human_size(stored.stat().st_size)  # the cached file's own size
        else:
            assert item.num_params is not None
            expected = "~" + human_size(item.num_params * 4)  # an estimate, marked as one
        assert f" {expected} " in f" {row} ", (item.name, row)
        assert (item.aliases[0] if item.aliases else "-") in rows[item.name][1]
    total = out.splitlines()[-1]
    assert total.startswith(f"total: {len(manifest)} models, ~") and "1 cached (1.2 kB" in total

    code, out, _ = run_cli(capsys, ["weights", "list", "--json"])
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == len(manifest)
    assert all(record["command"] == "weights list" for record in records)
    by_name = {record["name"]: record for record in records}
    assert by_name["edsr-x2"]["status"] == "cached" and by_name["edsr-x2"]["size_bytes"] == 1234
    assert by_name["realesrgan-x4plus"]["status"] == "bundled" and by_name["vdsr"]["status"] == "not cached"
    assert by_name["edsr-x3"]["size"] is None and by_name["edsr-x3"]["size_estimated"] is True
    assert all(record["size_bytes"] > 0 for record in records)


def test_rm_removes_a_models_files_and_partial_download_and_nothing_else(capsys: pytest.CaptureFixture[str]) -> None:
    vdsr = cache_file("vdsr")
    other = cache_file("edsr-baseline-x2")
    part = part_path(entry("vdsr"))
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(b"half")
    before = bundled_state()

    code, out, err = run_cli(capsys, ["weights", "rm", "vdsr", "--dry-run"])
    assert code == 0 and vdsr.exists() and part.exists()
    assert out.splitlines() == [f"would remove\tvdsr\t{vdsr}", f"would remove\tvdsr\t{part}"]
    assert "without --dry-run" in err

    code, out, err = run_cli(capsys, ["weights", "rm", "vdsr"])
    assert code == 0, err
    assert out.splitlines() == [f"removed\tvdsr\t{vdsr}", f"removed\tvdsr\t{part}"]
    assert not vdsr.exists() and not vdsr.parent.exists() and not part.exists()
    assert "freed" in err and human_size(entry("vdsr").size) in err
    assert other.exists() and bundled_state() == before

    code, out, err = run_cli(capsys, ["weights", "rm", "realesrgan-x4plus", "--json"])
    assert code == 0 and "bundled copy is part of sr" in err
    assert json.loads(out) == {"command": "weights rm", "status": "absent", "name": "realesrgan-x4plus"}
    assert bundled_state() == before
    code, _, err = run_cli(capsys, ["weights", "rm", "vdsrr"])
    assert code == 2 and "did you mean" in err
    code, _, err = run_cli(capsys, ["weights", "rm", "edsr"])
    assert code == 2 and "--scale" in err
    code, out, _ = run_cli(capsys, ["weights", "rm", "edsr-baseline", "-s", "2", "-q"])
    assert code == 0 and out == f"removed\tedsr-baseline-x2\t{other}\n"


def test_rm_says_when_the_space_stays_in_the_hugging_face_cache(isolated_caches: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    blob = isolated_caches / "hf" / "hub" / "models--owner--repo" / "blobs" / "abc"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"\0" * (entry("vdsr").size or 0))
    stored = entry_path(entry("vdsr").sha256 or "", entry("vdsr").filename)
    stored.parent.mkdir(parents=True)
    os.link(blob, stored)  # what store_verified(how="link") makes
    code, _, err = run_cli(capsys, ["weights", "rm", "vdsr"])
    assert code == 0 and not stored.exists() and blob.exists()
    assert "0 B freed" in err and "Hugging Face cache" in err


def _prune_setup() -> dict[str, Path]:
    root = weights_dir()
    foreign = root / ("ab" * 32) / "old_model.pth"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"from an older manifest")
    partial = part_path(entry("esrgan"))
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(b"half a download")
    busy = part_path(entry("vdsr"))
    busy.write_bytes(b"being written")
    old_temp = root / ("cd" * 32) / "x.pth.0a1b.tmp"
    old_temp.parent.mkdir(parents=True)
    old_temp.write_bytes(b"killed mid-write")
    an_hour_ago = time.time() - 3600
    os.utime(old_temp, (an_hour_ago, an_hour_ago))
    young_temp = old_temp.with_name("y.pth.2c3d.tmp")
    young_temp.write_bytes(b"a running write")
    return {"cached": cache_file("edsr-baseline-x3"), "damaged": cache_file("edsr-baseline-x4", size=1000),
            "foreign": foreign, "partial": partial, "busy": busy, "old_temp": old_temp, "young_temp": young_temp}


def test_prune_removes_partials_damaged_foreign_and_stale_files_only(isolated_caches: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    files = _prune_setup()
    hub_file = isolated_caches / "hf" / "hub" / "models--a--b" / "blobs" / "123"
    hub_file.parent.mkdir(parents=True)
    hub_file.write_bytes(b"hub")
    before = bundled_state()
    removable = {"damaged", "foreign", "partial", "old_temp"}
    with lock_path(files["busy"]).open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # a download in progress holds its lock
        code, out, _ = run_cli(capsys, ["weights", "prune", "--dry-run", "--json"])
        assert code == 0
        records = [json.loads(line) for line in out.splitlines()]
        assert {Path(record["path"]) for record in records} == {files[key] for key in removable}
        assert {record["status"] for record in records} == {"dry-run"}
        reasons = {Path(record["path"]): record["reason"] for record in records}
        assert reasons[files["damaged"]] == "damaged" and reasons[files["foreign"]] == "not in the manifest"
        assert reasons[files["partial"]] == "partial download" and reasons[files["old_temp"]] == "temporary"
        assert all(path.exists() for path in files.values())

        code, out, err = run_cli(capsys, ["weights", "prune"])
        assert code == 0, err
        assert {Path(line.split("\t")[2]) for line in out.splitlines()} == {files[key] for key in removable}
        assert all(line.startswith("removed\t") for line in out.splitlines())
    for key, path in files.items():
        assert path.exists() == (key not in removable), key
    assert hub_file.exists() and bundled_state() == before
    code, out, _ = run_cli(capsys, ["weights", "prune"])  # the download has let go of its part file
    assert code == 0 and out == f"removed\tvdsr\t{files['busy']}\n"
    code, out, err = run_cli(capsys, ["weights", "prune"])
    assert code == 0 and out == "" and "nothing to prune" in err


def test_prune_all_needs_confirmation_and_never_touches_bundled_files(capsys: pytest.CaptureFixture[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    files = _prune_setup()
    before = bundled_state()
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    code, out, err = run_cli(capsys, ["weights", "prune", "--all"])
    assert code == 2 and "--yes" in err and out == ""
    assert files["cached"].exists() and files["partial"].exists()
    code, out, _ = run_cli(capsys, ["weights", "prune", "--all", "--yes"])
    assert code == 0
    assert files["cached"] in {Path(line.split("\t")[2]) for line in out.splitlines()}
    assert not files["cached"].exists() and not files["damaged"].exists()
    assert not files["busy"].exists()  # nobody holds its lock here: a leftover part like any other
    assert files["young_temp"].exists()  # may still be a running write
    assert bundled_state() == before
    code, out, _ = run_cli(capsys, ["weights", "list", "--json"])
    assert not any(json.loads(line)["status"] == "cached" for line in out.splitlines())


def test_every_weights_command_speaks_json_lines(vdsr_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def records(argv: list[str]) -> list[dict[str, object]]:
        code, out, err = run_cli(capsys, ["weights", *argv, "--json"])
        assert code == 0, err
        lines = [json.loads(line) for line in out.splitlines()]
        assert lines and all(record["command"] == f"weights {argv[0]}" for record in lines)
        return lines

    (imported,) = records(["import", "vdsr", str(vdsr_weights)])
    stored = Path(str(imported["path"]))
    assert imported["status"] == "ok" and stored.read_bytes() == vdsr_weights.read_bytes()
    assert records(["path", "vdsr"]) == [{"command": "weights path", "status": "ok", "name": "vdsr",
                                          "path": str(stored), "source": "cached"}]
    (checked,) = records(["verify"])
    assert checked["status"] == "ok" and checked["sha256"] == entry("vdsr").sha256
    (fetched,) = records(["download", "vdsr"])  # in the cache: no network needed
    assert fetched["status"] == "ok" and fetched["path"] == str(stored) and fetched["size"] == entry("vdsr").size
    (inspected,) = records(["inspect", str(stored)])
    assert inspected["status"] == "ok" and inspected["family"] == "vdsr" and inspected["manifest_name"] == "vdsr"
    code, out, err = run_cli(capsys, ["weights", "download", "vdsr", "-q"])
    assert code == 0 and out == f"vdsr\t{stored}\n" and err == ""
