"""`--init`: start from another model's weights, strictly.

Same scale: every tensor is copied (keys and shapes must match exactly: strict loading).
Another scale (EDSR x2 -> x3/x4, the EDSR paper's Sec. 4.2 recipe): every tensor but the
scale-specific ones is copied, and those are left freshly initialised; the report lists them so the
command can say so. Each family's descriptor names its scale-specific prefixes (`scale_specific_prefixes`:
EDSR the upsampler `tail.0.`, RRDB `conv_first.`, which the x2/x1 variants' pixel_unshuffle widens).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from sr_cli.archs.families import descriptor_of
from sr_cli.archs.runtime import AnyModule, AnyParams, family_of
from sr_cli.errors import CheckpointError, UnsupportedCheckpointError
from sr_cli.train.checkpointing import read_run_checkpoint
from sr_cli.train.network import params_from_json


@dataclass(frozen=True)
class InitSource:
    label: str  # what the user gave (file or name)
    family: str
    params: AnyParams
    state_dict: dict[str, Tensor]


@dataclass(frozen=True)
class InitReport:
    label: str
    copied: int
    fresh: tuple[str, ...]  # keys left freshly initialised (empty for a same-scale init)
    source_scale: int | None
    target_scale: int | None

    def describe(self) -> str:
        text = f"initialised from {self.label}: {self.copied} tensors copied"
        if self.fresh:
            prefixes = sorted({k.rsplit(".", 1)[0] for k in self.fresh})
            text += (f"; x{self.source_scale} -> x{self.target_scale}: {len(self.fresh)} scale-specific tensors "
                     f"({', '.join(prefixes)}) freshly initialised")
        return text


def _scale_of(params: AnyParams) -> int | None:
    scale = getattr(params, "scale", None)
    return int(scale) if scale is not None else None


def read_init_source(spec: str) -> InitSource:
    """An --init argument: an sr export (.safetensors), an sr run checkpoint (last.pt), another weights
    file (through sr_cli.weights.loading), or a zoo name."""
    path = Path(spec)
    if path.is_file():
        if path.suffix == ".safetensors":
            from sr_cli.weights.safetensors_io import META_FAMILY, META_HYPERPARAMETERS, read_safetensors

            tensors, metadata = read_safetensors(path)
            if META_FAMILY in metadata and META_HYPERPARAMETERS in metadata:
                family = metadata[META_FAMILY]
                params = params_from_json(family, metadata[META_HYPERPARAMETERS], str(path))
                return InitSource(str(path), family, params, tensors)
        elif path.suffix == ".pt":
            payload = read_run_checkpoint(path)
            if payload is not None:
                family = str(payload["family"])
                params = params_from_json(family, str(payload["hyperparameters"]), str(path))
                return InitSource(str(path), family, params, dict(payload["model"]))
        return _from_weights_loader(path)
    if path.suffix or "/" in spec or "\\" in spec:
        raise CheckpointError(f"--init {spec}: no such file; give a weights file or a model name (sr weights list)")
    return _from_zoo(spec)


def _source_from_module(label: str, module: nn.Module) -> InitSource:
    return InitSource(label, family_of(module), module.params,  # type: ignore[arg-type]
                      {k: v.detach().clone() for k, v in module.state_dict().items()})


def _from_weights_loader(path: Path) -> InitSource:
    from sr_cli.weights.loading import load_checkpoint  # the weights layer: detection + conversion

    return _source_from_module(str(path), load_checkpoint(path).module)


def _from_zoo(name: str) -> InitSource:
    """A published model by manifest name (downloaded and verified by the zoo), e.g. edsr-baseline-x2."""
    from sr_cli import zoo

    _, checkpoint = zoo.ModelSession().checkpoint(name)  # verified and checked against the manifest
    return _source_from_module(name, checkpoint.module)


def initialise_from(module: AnyModule, params: AnyParams, source: InitSource) -> InitReport:
    """Copy `source` into `module` as described in the module docstring; raise on any other mismatch."""
    family = family_of(module)
    if source.family != family:
        raise CheckpointError(f"--init {source.label}: a {source.family} model cannot initialise a {family} model")
    target_state = module.state_dict()
    source_scale, target_scale = _scale_of(source.params), _scale_of(params)
    specific = descriptor_of(module).scale_specific_prefixes if source_scale != target_scale else ()

    def is_specific(key: str) -> bool:
        return any(key.startswith(prefix) for prefix in specific)

    shared_target = {k for k in target_state if not is_specific(k)}
    shared_source = {k for k in source.state_dict if not is_specific(k)}
    missing, unexpected = sorted(shared_target - shared_source), sorted(shared_source - shared_target)
    mismatched = sorted(k for k in shared_target & shared_source
                        if tuple(source.state_dict[k].shape) != tuple(target_state[k].shape))
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        if mismatched:
            k = mismatched[0]
            parts.append(f"{len(mismatched)} shape mismatches, e.g. {k} {tuple(source.state_dict[k].shape)} vs "
                         f"{tuple(target_state[k].shape)}")
        raise UnsupportedCheckpointError(f"--init {source.label}: does not fit this {family} model "
                                         f"({'; '.join(parts)}); match --blocks/--features to it")
    merged = {k: (target_state[k] if is_specific(k) else source.state_dict[k].to(target_state[k].dtype))
              for k in target_state}
    module.load_state_dict(merged, strict=True)
    fresh = tuple(sorted(k for k in target_state if is_specific(k)))
    return InitReport(source.label, len(target_state) - len(fresh), fresh, source_scale, target_scale)
