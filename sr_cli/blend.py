"""`sr blend`: network interpolation between a PSNR-oriented model and its GAN model (ESRGAN, Sec. 3.4).

theta = (1 - alpha) * theta_PSNR + alpha * theta_GAN. The result is a .safetensors file whose metadata
names both sources (label and sha256), alpha, family and hyperparameters, so `sr upscale --weights` and
`sr weights inspect` read it like any other checkpoint. `--mode image` blends the two models' OUTPUT
images instead, the comparison the ESRGAN paper draws (Fig. 9); it is not the default.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from sr_cli.api import UpscaleOptions, Upscaler
from sr_cli.archs.runtime import SRNet, build_module, to_srnets
from sr_cli.defaults import DEFAULT_BLEND_PAIR
from sr_cli.errors import CheckpointError, OfflineError, UsageError
from sr_cli.weights.interpolate import check_alpha, check_compatible, interpolate_state_dicts
from sr_cli.weights.loading import LoadedCheckpoint, srnet_serving
from sr_cli.weights.safetensors_io import save_safetensors, sr_metadata

DEFAULT_PAIR = DEFAULT_BLEND_PAIR  # (PSNR, GAN): ESRGAN's
# A 50/50 blend whose output strays from the midpoint of the two endpoint outputs by more than this
# fraction of the endpoints' own signal is "garbage": related models (one fine-tuned from the other, as
# ESRGAN's GAN model is from its PSNR model) stay close to the midpoint; unrelated ones do not.
MAX_MIDPOINT_DEVIATION = 0.5
# ... and one whose output has almost no contrast left (std below this fraction of the endpoints') is flat.
MIN_CONTRAST_RATIO = 0.1
PATTERN_SIZE = 32


@dataclass(frozen=True)
class Endpoint:
    """One side of a blend: what the user named (manifest name or file) and the loaded checkpoint."""

    label: str
    checkpoint: LoadedCheckpoint
    variant: str | None  # "psnr" | "gan" from the manifest; None for a plain file


@dataclass(frozen=True)
class Blend:
    family: str
    params: object
    state_dict: dict[str, Tensor]
    metadata: dict[str, str]


def default_labels(psnr: str | None, gan: str | None) -> tuple[str, str]:
    """Fill in a missing side from the manifest pair of the other (default: ESRGAN's PSNR + GAN pair)."""
    from sr_cli import zoo

    if psnr is None and gan is None:
        return DEFAULT_PAIR
    given, missing_role = (psnr, "gan") if gan is None else (gan, "psnr") if psnr is None else (None, None)
    if given is None:
        return psnr, gan  # type: ignore[return-value]
    if zoo.looks_like_path(given):
        raise UsageError(f"{given} is a file: pass its partner too (--{missing_role} NAME|FILE)")
    entry = zoo.resolve(given)
    partner = zoo.interpolation_partner_of(entry)
    if partner is None:
        raise UsageError(f"{given} has no PSNR/GAN partner in the manifest; pass --{missing_role} NAME|FILE")
    return (given, partner.name) if missing_role == "gan" else (partner.name, given)


def default_output(gan: str, alpha: float) -> Path:
    """Where `sr blend --alpha A` writes without -o: `<gan>-alpha<A>.safetensors` in the current folder, <gan>
    being the GAN side's manifest name (`esrgan-alpha0.8.safetensors`) or its file's stem."""
    from sr_cli import zoo

    name = Path(gan).stem if zoo.looks_like_path(gan) else zoo.resolve(gan).name
    return Path(f"{name}-alpha{alpha:g}.safetensors")


def load_pair(psnr: str, gan: str, *, res_scale: float | None = None) -> tuple[Endpoint, Endpoint]:
    """Both sides (names downloaded and verified as needed, or files). Offline with a named side not cached:
    one line naming every missing file, before anything is loaded."""
    from sr_cli import zoo
    from sr_cli.weights.download import fetch

    missing: list[str] = []
    for spec in (psnr, gan):
        if not zoo.looks_like_path(spec):
            entry = zoo.resolve(spec)
            try:
                fetch(entry)  # a cache hit, or the download where there is network
            except OfflineError:
                missing.append(entry.name)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise OfflineError(f"{' and '.join(missing)} {verb} not in the cache and the network is off; run "
                           f"`sr weights download {' '.join(missing)}` where there is network, or pass local "
                           f"files with --psnr FILE --gan FILE")
    return load_endpoint(psnr, res_scale=res_scale), load_endpoint(gan, res_scale=res_scale)


def load_endpoint(spec: str, *, res_scale: float | None = None) -> Endpoint:
    """A manifest name (downloaded and verified as needed, checked against its manifest entry) or a
    weights file, through the zoo like every other load."""
    from sr_cli import zoo

    try:
        entry, checkpoint = zoo.ModelSession().checkpoint(spec, res_scale=res_scale)
    except OfflineError:
        name = zoo.resolve(spec).name
        raise OfflineError(f"{name} is not in the cache; run `sr weights download {name}` where there is "
                           f"network, or pass the file with --psnr/--gan FILE") from None
    if entry is None:
        return Endpoint(spec, checkpoint, None)
    return Endpoint(entry.name, checkpoint, entry.variant)


def blend(psnr: Endpoint, gan: Endpoint, alpha: float) -> Blend:
    """The interpolated weights with their provenance, after every compatibility check."""
    check_alpha(alpha)
    first, second = psnr.checkpoint.detected, gan.checkpoint.detected
    what = f"{psnr.label} and {gan.label}"
    if first.family != second.family:
        raise CheckpointError(f"{what} cannot be blended: one is {first.family}, the other {second.family}; "
                              f"blend two checkpoints of the same architecture")
    check_compatible(first.state_dict, second.state_dict, what)
    if first.params != second.params:
        raise CheckpointError(f"{what} cannot be blended: hyperparameters differ ({first.params} vs {second.params})")
    for endpoint, role in ((psnr, "psnr"), (gan, "gan")):
        if endpoint.variant is not None and endpoint.variant != role:
            raise UsageError(f"{endpoint.label} is the {endpoint.variant.upper()} model of its pair; "
                             f"pass it as --{endpoint.variant}")
    state_dict = interpolate_state_dicts(first.state_dict, second.state_dict, alpha)
    sources = [{"role": role, "label": e.label, "sha256": e.checkpoint.sha256, "layout": e.checkpoint.detected.layout}
               for role, e in (("psnr", psnr), ("gan", gan))]
    metadata = sr_metadata(first.family, first.params, alpha=repr(float(alpha)), sources=json.dumps(sources),
                           blend="weights")
    return Blend(first.family, first.params, state_dict, metadata)


def module_of(result: Blend) -> nn.Module:
    """The blended weights in a ready module (strict load, eval mode)."""
    module = build_module(result.family, result.params)
    module.load_state_dict(result.state_dict, strict=True)
    return module.eval()


def check_not_degenerate(psnr: Endpoint, gan: Endpoint) -> None:
    """Refuse a pair whose 50/50 blend outputs garbage on a test pattern (unrelated models)."""
    half = module_of(blend(psnr, gan, 0.5))
    pattern = probe_pattern(PATTERN_SIZE)
    outputs = [_detail(net, pattern) for net in (psnr.checkpoint.module, gan.checkpoint.module, half)]
    out_psnr, out_gan, out_half = outputs
    what = f"{psnr.label} and {gan.label}"
    if not torch.isfinite(out_half).all():
        raise CheckpointError(f"{what}: their 50/50 blend outputs NaN/Inf on a test pattern; "
                              f"they are not a PSNR/GAN pair of one training run")
    signal = 0.5 * (out_psnr.std() + out_gan.std())
    midpoint = 0.5 * (out_psnr + out_gan)
    deviation = float((out_half - midpoint).pow(2).mean().sqrt() / signal.clamp_min(1e-8))
    contrast = float(out_half.std() / signal.clamp_min(1e-8))
    if deviation > MAX_MIDPOINT_DEVIATION or contrast < MIN_CONTRAST_RATIO:
        raise CheckpointError(
            f"{what}: their 50/50 blend outputs a degenerate image on a test pattern (off the midpoint of the "
            f"two outputs by {deviation:.0%} of their signal, contrast {contrast:.0%}); network interpolation "
            f"only works between a model and one fine-tuned from it, e.g. ESRGAN's PSNR and GAN models")


def probe_pattern(size: int) -> Tensor:
    """[1, 3, size, size] in [0, 1]: ramps, a disc and a checkerboard, so flat output is easy to tell."""
    coords = torch.linspace(0.0, 1.0, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    disc = (((xx - 0.5) ** 2 + (yy - 0.5) ** 2) < 0.09).float()
    checker = ((torch.arange(size)[:, None] // 4 + torch.arange(size)[None, :] // 4) % 2).float()
    return torch.stack([0.2 + 0.6 * xx, 0.2 + 0.6 * disc, 0.2 + 0.3 * yy + 0.3 * checker])[None]


def _detail(module: nn.Module, pattern: Tensor) -> Tensor:
    """What the network adds: its output, minus its input for nets that refine an image already at the
    output size (VDSR). Otherwise the input would dominate the comparison, and a blend whose residual
    branch died (outputting its input unchanged) would look healthy."""
    net: SRNet = next(iter(to_srnets(module).values()))
    x = pattern.mean(dim=1, keepdim=True) if net.in_channels == 1 else pattern
    with torch.inference_mode():
        out = net(x).float()
    return out - x if net.scale == 1 else out


def save(result: Blend, path: Path, *, overwrite: bool = False) -> None:
    save_safetensors(path, result.state_dict, result.metadata, overwrite=overwrite)


# --- images: --mode image and --sweep ------------------------------------------------------------------


def srnet_of(module: nn.Module, scale: float) -> SRNet:
    net = srnet_serving(module, scale)
    if net is None:
        raise UsageError(f"the blended model does not serve x{scale:g}")
    return net


def upscaler_for(module: nn.Module, scale: float, label: str, options: UpscaleOptions) -> Upscaler:
    return Upscaler(srnet_of(module, scale), name=label, output_scale=float(scale), options=options)


def blend_images(first: np.ndarray, second: np.ndarray, alpha: float) -> np.ndarray:
    """(1 - alpha) * first + alpha * second, in float, returned in the inputs' dtype."""
    check_alpha(alpha)
    mixed = (1.0 - alpha) * first.astype(np.float64) + alpha * second.astype(np.float64)
    if np.issubdtype(first.dtype, np.integer):
        return np.clip(np.rint(mixed), 0, np.iinfo(first.dtype).max).astype(first.dtype)
    return mixed.astype(first.dtype)


def sweep_images(psnr: Endpoint, gan: Endpoint, alphas: Sequence[float], crop: np.ndarray, *, scale: float,
                 mode: str, options: UpscaleOptions) -> list[np.ndarray]:
    """The crop upscaled at each alpha, by weight blending (default) or output blending."""
    for alpha in alphas:
        check_alpha(alpha)
    if mode == "image":
        ends = [upscaler_for(e.checkpoint.module, scale, e.label, options).upscale(crop) for e in (psnr, gan)]
        return [blend_images(ends[0], ends[1], alpha) for alpha in alphas]
    return [upscaler_for(module_of(blend(psnr, gan, alpha)), scale, f"alpha {alpha:g}", options).upscale(crop)
            for alpha in alphas]


def parse_alphas(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--sweep {text!r}: give alphas separated by commas, e.g. 0,0.2,0.4,0.6,0.8,1") from None
    if not values:
        raise UsageError("--sweep needs at least one alpha, e.g. 0,0.5,1")
    for value in values:
        check_alpha(value)
    return values
