"""Batch planning: inputs, output names, collisions, existing outputs, recursive mirroring."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from sr_cli.batch import (
    ExistingPolicy,
    InputFile,
    expand_inputs,
    model_label,
    output_bit_depth,
    plan_jobs,
    scale_label,
)
from sr_cli.errors import InputError, OutputError, UsageError


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def plan(inputs: list[InputFile], **overrides: object):
    settings: dict[str, object] = dict(output=None, factor=4.0, model="edsr", out_format=None, existing=ExistingPolicy.ERROR, recursive=False)
    settings.update(overrides)
    return plan_jobs(inputs, **settings)  # type: ignore[arg-type]


def test_folder_expansion_skips_non_images_and_hidden_files_and_reports_subfolders(tmp_path: Path) -> None:
    for name in ("b.png", "a.JPG", "notes.txt", ".hidden.png", "sub/c.png"):
        touch(tmp_path / name)
    files, ignored = expand_inputs([tmp_path], recursive=False)
    assert [item.path.name for item in files] == ["a.JPG", "b.png"]
    assert all(item.root == tmp_path for item in files)
    reasons = {item.path.name: item.reason for item in ignored}
    assert "not an image" in reasons["notes.txt"] and "--recursive" in reasons[tmp_path.name]


def test_recursive_expansion_walks_the_tree_but_not_hidden_folders(tmp_path: Path) -> None:
    for name in ("a.png", "x/b.png", "x/y/c.webp", ".git/d.png"):
        touch(tmp_path / name)
    files, ignored = expand_inputs([tmp_path], recursive=True)
    assert [item.path.relative_to(tmp_path).as_posix() for item in files] == ["a.png", "x/b.png", "x/y/c.webp"]
    assert ignored == []


def test_files_globs_and_duplicates(tmp_path: Path) -> None:
    for name in ("a.png", "b.png", "c.tiff"):
        touch(tmp_path / name)
    files, _ = expand_inputs([tmp_path / "a.png", str(tmp_path / "*.png"), tmp_path / "c.tiff"], recursive=False)
    assert [item.path.name for item in files] == ["a.png", "b.png", "c.tiff"]
    assert files[0].root is None


def test_missing_inputs_and_empty_results_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        expand_inputs([tmp_path / "absent.png"], recursive=False)
    with pytest.raises(InputError, match="matches nothing"):
        expand_inputs([str(tmp_path / "*.png")], recursive=False)
    touch(tmp_path / "readme.md")
    with pytest.raises(InputError, match="no images"):
        expand_inputs([tmp_path], recursive=False)


def test_labels() -> None:
    assert scale_label(4.0) == "x4" and scale_label(3.5) == "x3.5"
    assert model_label("edsr-baseline") == "edsr-baseline"
    assert model_label("/w/RRDB ESRGAN x4.pth") == "RRDB-ESRGAN-x4"


def test_outputs_beside_inputs_keep_the_format_and_suffix(tmp_path: Path) -> None:
    jobs, _ = plan([InputFile(tmp_path / "photo.JPG"), InputFile(tmp_path / "scan.tif"), InputFile(tmp_path / "anim.gif")])
    assert [(job.output.name, job.format) for job in jobs] == [
        ("photo_x4_edsr.jpg", "jpeg"), ("scan_x4_edsr.tif", "tiff"), ("anim_x4_edsr.png", "png")]
    assert all(job.output.parent == tmp_path and not job.skip for job in jobs)


def test_output_folder_and_format(tmp_path: Path) -> None:
    jobs, _ = plan([InputFile(tmp_path / "in" / "a.png")], output=tmp_path / "out", out_format="jpg", model=None, factor=3.5)
    assert jobs[0].output == tmp_path / "out" / "a_x3.5.jpg" and jobs[0].format == "jpeg"


def test_two_inputs_with_the_same_name_get_distinct_outputs(tmp_path: Path) -> None:
    inputs = [InputFile(tmp_path / "d1" / "x.png"), InputFile(tmp_path / "d2" / "x.png"), InputFile(tmp_path / "d3" / "X.png")]
    jobs, _ = plan(inputs, output=tmp_path / "out")
    names = [job.output.name for job in jobs]
    assert len({name.casefold() for name in names}) == 3  # distinct even where case does not count
    assert [re.fullmatch(r"([xX])_x4_edsr-[0-9a-f]{8}\.png", name) is not None for name in names] == [True] * 3
    assert all(job.note is not None and "same output name" in job.note for job in jobs)


def test_same_stem_different_formats_into_one_format(tmp_path: Path) -> None:
    jobs, _ = plan([InputFile(tmp_path / "a.png"), InputFile(tmp_path / "a.jpg")], out_format="png")
    names = [job.output.name for job in jobs]
    assert len(set(names)) == 2 and all(re.fullmatch(r"a_x4_edsr-[0-9a-f]{8}\.png", name) for name in names)


def test_an_output_never_lands_on_an_explicit_input(tmp_path: Path) -> None:
    touch(tmp_path / "a.png")
    touch(tmp_path / "a_x4_edsr.png")  # named by the user: an input, so a's output must go elsewhere
    jobs, dropped = plan([InputFile(tmp_path / "a.png"), InputFile(tmp_path / "a_x4_edsr.png")], existing=ExistingPolicy.OVERWRITE)
    assert dropped == []
    assert re.fullmatch(r"a_x4_edsr-[0-9a-f]{8}\.png", jobs[0].output.name) and jobs[0].note is not None
    assert jobs[1].output.name == "a_x4_edsr_x4_edsr.png" and jobs[1].note is None


def test_rerun_beside_inputs_does_not_take_its_own_outputs_as_inputs(tmp_path: Path) -> None:
    for name in ("a.png", "a_x4_edsr.png", "b.png", "b_x4_edsr-2.png", "c_x4_edsr.png"):
        touch(tmp_path / name)
    files, _ = expand_inputs([tmp_path], recursive=False)
    jobs, dropped = plan(files, existing=ExistingPolicy.SKIP)
    assert sorted(item.path.name for item in dropped) == ["a_x4_edsr.png", "b_x4_edsr-2.png"]
    assert [(job.source.name, job.output.name, job.skip) for job in jobs] == [
        ("a.png", "a_x4_edsr.png", True),
        ("b.png", "b_x4_edsr.png", False),
        ("c_x4_edsr.png", "c_x4_edsr_x4_edsr.png", False),  # no c.png: it is an input like any other
    ]


def test_suffix_replaces_the_scale_and_model_in_names(tmp_path: Path) -> None:
    inputs = [InputFile(touch(tmp_path / "photo.png")), InputFile(touch(tmp_path / "scan.TIF"))]
    jobs, _ = plan(inputs, suffix="out")
    assert [job.output.name for job in jobs] == ["photo_out.png", "scan_out.tif"]
    jobs, _ = plan(inputs, suffix="", output=tmp_path / "big", out_format="jpg")
    assert [(job.output, job.format) for job in jobs] == [(tmp_path / "big" / "photo.jpg", "jpeg"),
                                                          (tmp_path / "big" / "scan.jpg", "jpeg")]


def test_an_empty_suffix_onto_the_input_is_refused_and_counters_are_not_outputs(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="the input itself"):
        plan([InputFile(touch(tmp_path / "photo.png"))], suffix="")
    with pytest.raises(UsageError, match="the input itself"):  # a case-only difference is one file on macOS/Windows
        plan([InputFile(touch(tmp_path / "case" / "Photo.PNG"))], suffix="")
    touch(tmp_path / "set" / "photo.jpg")
    touch(tmp_path / "set" / "photo-2.jpg")  # a photo of its own, not an older output (-N was for default names)
    files, _ = expand_inputs([tmp_path / "set"], recursive=False)
    jobs, dropped = plan(files, suffix="", out_format="png")
    assert dropped == [] and [job.output.name for job in jobs] == ["photo-2.png", "photo.png"]


def test_existing_outputs_error_skip_or_overwrite(tmp_path: Path) -> None:
    inputs = [InputFile(tmp_path / f"{name}.png") for name in "abcde"]
    for name in "abcd":
        touch(tmp_path / f"{name}_x4_edsr.png")
    with pytest.raises(OutputError, match=r"4 output\(s\) already exist .*--overwrite.*--skip-existing"):
        plan(inputs)
    skipped, _ = plan(inputs, existing=ExistingPolicy.SKIP)
    assert [job.skip for job in skipped] == [True, True, True, True, False]
    replaced, _ = plan(inputs, existing=ExistingPolicy.OVERWRITE)
    assert not any(job.skip for job in replaced)


def test_single_output_file(tmp_path: Path) -> None:
    one = [InputFile(tmp_path / "a.png")]
    jobs, _ = plan(one, output=tmp_path / "big.webp")
    assert jobs[0].output == tmp_path / "big.webp" and jobs[0].format == "webp"
    with pytest.raises(UsageError, match="2 inputs"):
        plan(one + [InputFile(tmp_path / "b.png")], output=tmp_path / "big.png")
    with pytest.raises(UsageError, match="agree"):
        plan(one, output=tmp_path / "big.png", out_format="jpg")
    touch(tmp_path / "a.png")
    with pytest.raises(UsageError, match="input itself"):
        plan(one, output=tmp_path / "a.png")
    with pytest.raises(UsageError, match="input itself"):
        plan(one, output=tmp_path / "." / "a.png")
    touch(tmp_path / "big.png")
    with pytest.raises(OutputError, match="already exist"):
        plan(one, output=tmp_path / "big.png")
    assert plan(one, output=tmp_path / "big.png", existing=ExistingPolicy.SKIP)[0][0].skip


def test_output_that_is_an_existing_non_image_file_is_refused(tmp_path: Path) -> None:
    touch(tmp_path / "notes.txt")
    with pytest.raises(UsageError, match="not a folder"):
        plan([InputFile(tmp_path / "a.png")], output=tmp_path / "notes.txt")
    with pytest.raises(UsageError, match="cannot write .gif"):
        plan([InputFile(tmp_path / "a.png")], output=tmp_path / "out.gif")


def test_recursive_mirrors_the_tree_under_the_output_folder(tmp_path: Path) -> None:
    for name in ("a.png", "x/b.png", "x/y/c.png"):
        touch(tmp_path / "in" / name)
    files, _ = expand_inputs([tmp_path / "in"], recursive=True)
    jobs, _ = plan(files, output=tmp_path / "out", recursive=True)
    assert [job.output.relative_to(tmp_path / "out").as_posix() for job in jobs] == [
        "a_x4_edsr.png", "x/b_x4_edsr.png", "x/y/c_x4_edsr.png"]
    beside, _ = plan(files, recursive=True)
    assert [job.output.parent for job in beside] == [item.path.parent for item in files]


def test_output_bit_depth_rules() -> None:
    assert output_bit_depth(None, 16, "png") == (16, None)
    assert output_bit_depth(None, 8, "tiff") == (8, None)
    depth, note = output_bit_depth(None, 16, "jpeg")
    assert depth == 8 and note is not None and "16-bit" in note
    assert output_bit_depth(16, 8, "png") == (16, None)
    assert output_bit_depth(8, 16, "tiff") == (8, None)
    with pytest.raises(UsageError, match="png or tiff"):
        output_bit_depth(16, 8, "webp")
