"""Family descriptors (archs/families.py): the list covers every family file, every descriptor places
what its module writes (a grid of hyperparameters, directly, through our safetensors export, through a
DataParallel `module.` .pt and through foreign layouts), and nothing outside archs/ tests a family name."""
from __future__ import annotations

import ast
import dataclasses
import importlib
import io
import tokenize
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from sr_cli.archs.descriptor import FamilyDescriptor, FamilyName, HyperparameterError
from sr_cli.archs.edsr import EDSRParams
from sr_cli.archs.families import FAMILIES, FAMILY_NAMES, descriptor_for, descriptor_of
from sr_cli.archs.mdsr import MDSRParams
from sr_cli.archs.rrdb import RRDBParams, to_esrgan_2018, to_esrgan_2019
from sr_cli.archs.runtime import to_srnets
from sr_cli.archs.srvgg import SRVGGParams
from sr_cli.archs.vdsr import VDSRParams
from sr_cli.weights.detect import detect
from sr_cli.weights.loading import load_checkpoint
from sr_cli.weights.safetensors_io import save_safetensors, sr_metadata

PACKAGE = Path(__file__).resolve().parents[1] / "sr_cli"
ARCHS = PACKAGE / "archs"
# archs/ files that are infrastructure, not a family
NOT_FAMILIES = {"__init__", "descriptor", "families", "runtime"}

# A hyperparameter grid per family: every shape-visible field takes at least two values, tiny sizes.
GRIDS: dict[str, list[Any]] = {
    "edsr": [EDSRParams(n_resblocks=1, n_feats=4, scale=2), EDSRParams(n_resblocks=2, n_feats=8, scale=3),
             EDSRParams(n_resblocks=3, n_feats=4, scale=4, res_scale=0.1),
             EDSRParams(n_resblocks=1, n_feats=6, scale=2, rgb_range=1.0, res_scale=0.5)],
    "mdsr": [MDSRParams(n_resblocks=1, n_feats=4), MDSRParams(n_resblocks=2, n_feats=8, scales=(4,)),
             MDSRParams(n_resblocks=1, n_feats=4, scales=(3, 2), res_scale=0.25, rgb_range=1.0)],
    "rrdb": [RRDBParams(num_feat=4, num_block=1, num_grow_ch=2), RRDBParams(num_feat=8, num_block=2, num_grow_ch=4, scale=2),
             RRDBParams(num_in_ch=1, num_out_ch=1, num_feat=4, num_block=1, num_grow_ch=3, scale=1)],
    "vdsr": [VDSRParams(num_layers=3, num_features=2), VDSRParams(num_layers=6, num_features=8)],
    "srvgg": [SRVGGParams(num_feat=4, num_conv=0, upscale=1), SRVGGParams(num_feat=8, num_conv=3, upscale=4),
              SRVGGParams(num_in_ch=1, num_out_ch=1, num_feat=4, num_conv=1, upscale=3)],
}
# Foreign layouts a family's placer converts from: layout -> (writer, applies to these params?)
FOREIGN: dict[str, dict[str, Callable[[dict[str, Tensor], Any], dict[str, Tensor] | None]]] = {
    "rrdb": {
        "esrgan-2019": lambda sd, p: to_esrgan_2019(sd),
        "esrgan-2018": lambda sd, p: to_esrgan_2018(sd, p.num_block) if p.scale == 4 else None,  # x4 only
    },
}


def _cases() -> list[Any]:
    return [pytest.param(d, p, id=f"{d.name}-{i}") for d in FAMILIES for i, p in enumerate(GRIDS.get(d.name, []))]


def test_every_family_file_is_listed_once_and_has_a_grid() -> None:
    """A new family is archs/<family>.py with a DESCRIPTOR plus one line in families.py: nothing is
    missed (a file without its line, a name missing from FamilyName, a descriptor without a grid here)."""
    files = sorted(p.stem for p in ARCHS.glob("*.py") if p.stem not in NOT_FAMILIES)
    declared = [importlib.import_module(f"sr_cli.archs.{stem}").DESCRIPTOR for stem in files]
    assert sorted(d.name for d in declared) == sorted(FAMILY_NAMES) == files
    assert {id(d) for d in declared} == {id(d) for d in FAMILIES} and len(FAMILIES) == len(set(FAMILY_NAMES))
    assert sorted(typing.get_args(FamilyName)) == sorted(FAMILY_NAMES)
    assert sorted(GRIDS) == sorted(FAMILY_NAMES)
    for descriptor in FAMILIES:
        assert descriptor_for(descriptor.name) is descriptor
        with torch.device("meta"):
            module = descriptor.build(descriptor.params_class())
        assert descriptor_of(module) is descriptor
        assert {s.name for s in descriptor.schema()} == {f.name for f in dataclasses.fields(descriptor.params_class)}
        assert set(descriptor.shape_invisible) <= {s.name for s in descriptor.schema()}


def _same_tensors(placed: dict[str, Tensor], original: dict[str, Tensor]) -> None:
    assert list(placed) == list(original)  # canonical keys, in the module's order
    for key, tensor in original.items():
        assert placed[key].dtype == tensor.dtype and torch.equal(placed[key], tensor), key


@pytest.mark.parametrize(("descriptor", "params"), _cases())
def test_descriptor_places_what_its_module_writes(descriptor: FamilyDescriptor[Any], params: Any,
                                                  tmp_path: Path) -> None:
    """spandrel's assert_loads_correctly: build -> state dict -> place -> the same params and tensors."""
    torch.manual_seed(0)
    module = descriptor.build(params).eval()
    sd = module.state_dict()
    # res_scale is invisible in shapes: a caller gives it (argument) or our metadata carries it
    res_scale = getattr(params, "res_scale", None) if descriptor.shape_invisible else None

    detected = detect(sd, res_scale=res_scale)
    assert (detected.family, detected.params, detected.layout) == (descriptor.name, params, descriptor.layouts[0])
    _same_tensors(detected.state_dict, sd)
    served = descriptor.scales(params)
    assert detected.scales == (sorted(served) if served is not None else None)

    ours = tmp_path / "ours.safetensors"  # our export: everything from the (checked) metadata
    save_safetensors(ours, sd, sr_metadata(descriptor.name, params))
    loaded = load_checkpoint(ours)
    assert (loaded.detected.family, loaded.detected.params, loaded.detected.layout) == (descriptor.name, params, "sr-safetensors")
    _same_tensors(loaded.detected.state_dict, sd)

    wrapped = tmp_path / "data_parallel.pt"  # nn.DataParallel's `module.` prefix on every key
    torch.save({f"module.{k}": v for k, v in sd.items()}, wrapped)
    loaded = load_checkpoint(wrapped, res_scale=res_scale)
    assert loaded.detected.params == params
    _same_tensors(loaded.detected.state_dict, sd)

    for layout, write in FOREIGN.get(descriptor.name, {}).items():
        foreign = write(sd, params)
        if foreign is None:
            continue
        placed = detect(foreign, res_scale=res_scale)
        assert (placed.params, placed.layout) == (params, layout)
        _same_tensors(placed.state_dict, sd)

    # the placed module computes what the original does, through the generic SRNet view
    for scale, net in to_srnets(loaded.module).items():
        original = to_srnets(module)[scale]
        m = net.size_multiple
        x = torch.rand(1, net.in_channels, 4 * m, 3 * m)
        with torch.no_grad():
            assert torch.equal(net(x), original(x))


@pytest.mark.parametrize("descriptor", FAMILIES, ids=FAMILY_NAMES)
def test_schema_refuses_wrong_types_and_ranges(descriptor: FamilyDescriptor[Any]) -> None:
    """Every field of every schema: a string, a boolean, 20.5 / NaN for an integer, NaN / 0 for a float."""
    defaults = {f.name: getattr(descriptor.params_class(), f.name) for f in dataclasses.fields(descriptor.params_class)}
    assert descriptor.params_from(dict(defaults), require_all=True) == descriptor.params_class()
    for spec in descriptor.schema():
        bad: list[object] = ["3", True, None]
        bad += [20.5, float("nan"), spec.minimum - 1] if spec.kind == "int" else []
        bad += [float("nan"), float("inf"), 0.0] if spec.kind == "float" else []
        bad += [[2.5], [0], 3] if spec.kind == "int-tuple" else []
        for value in bad:
            with pytest.raises(HyperparameterError) as refused:
                descriptor.params_from({**defaults, spec.name: value}, require_all=True)
            assert refused.value.field == spec.name, (spec.name, value)
    with pytest.raises(HyperparameterError, match="unknown field"):
        descriptor.params_from({**defaults, "depth": 3}, require_all=True)


# --- nothing outside archs/ tests a family name --------------------------------------------------------

_COMPARISONS = {"==", "!=", "in", "case"}


def family_name_tests(source: str) -> list[tuple[int, str]]:
    """(line, text) of every place `source` tests or looks up a family name string: an operand of ==, !=,
    in, a `case`, an element of a literal container right of `in`, a subscript or .get() key, or the key
    of a dict display (a family -> something table). Declaring data (`family="edsr"`) is not a test; nor
    are the recipe table's keys, which are --model names."""
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
              if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT)]
    found = []
    for i, token in enumerate(tokens):
        if token.type != tokenize.STRING:
            continue
        try:
            value = ast.literal_eval(token.string)
        except (ValueError, SyntaxError):
            continue
        if value not in FAMILY_NAMES:
            continue
        prev = tokens[i - 1].string if i else ""
        after = tokens[i + 1].string if i + 1 < len(tokens) else ""
        hit = prev in _COMPARISONS or after in ("==", "!=")
        if prev == "[" and i >= 2 and (tokens[i - 2].type == tokenize.NAME or tokens[i - 2].string in (")", "]")):
            hit = True  # table["edsr"]
        if prev == "(" and i >= 2 and tokens[i - 2].string == "get":
            hit = True  # table.get("edsr")
        if after == ":" and not (i + 2 < len(tokens) and tokens[i + 2].string == "Recipe"):
            hit = hit or _inside(tokens, i, "{")  # {"edsr": ...}
        if prev in ("(", "[", "{", ","):
            opener = _opener(tokens, i)
            if opener is not None and opener > 0 and tokens[opener - 1].string == "in":
                hit = True  # x in ("edsr", "mdsr")
        if hit:
            found.append((token.start[0], source.splitlines()[token.start[0] - 1].strip()))
    return found


def _opener(tokens: list[tokenize.TokenInfo], i: int) -> int | None:
    depth = 0
    for j in range(i - 1, -1, -1):
        s = tokens[j].string
        if s in (")", "]", "}"):
            depth += 1
        elif s in ("(", "[", "{"):
            if depth == 0:
                return j
            depth -= 1
    return None


def _inside(tokens: list[tokenize.TokenInfo], i: int, bracket: str) -> bool:
    opener = _opener(tokens, i)
    return opener is not None and tokens[opener].string == bracket


def test_the_family_name_test_finder_finds_tests() -> None:
    """The finder itself, on the kinds of test the descriptors replaced (it must be able to fail)."""
    lines = [
        'if srnet.family == "vdsr":', 'x = family in ("edsr", "mdsr")', 'y = {"edsr": 1}', 'z = t["rrdb"]',
        'w = t.get("srvgg")', '"mdsr" != f', 'match f:\n    case "vdsr":\n        pass',
        'ok = Recipe(name="vdsr", family="vdsr")', 'R = {"edsr": Recipe(name="edsr")}', 'doc = "edsr x2"',
    ]
    source = "\n".join(lines)
    assert [line for line, _ in family_name_tests(source)] == [1, 2, 2, 3, 4, 5, 6, 8]


def test_nothing_outside_archs_tests_a_family_name() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ARCHS in path.parents:
            continue
        offenders += [f"{path.relative_to(PACKAGE)}:{line}: {text}"
                      for line, text in family_name_tests(path.read_text(encoding="utf-8"))]
    assert offenders == [], "ask the family's descriptor (archs/families.py) instead:\n" + "\n".join(offenders)
