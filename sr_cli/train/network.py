"""The trained network: the family's bare module built from the recipe, and the [0, 1] view training uses.

Training goes through `SRNet` (archs/runtime.py), so value-range conventions (EDSR/MDSR's 0..255) stay
in one place, and what is trained is exactly what `sr upscale` runs.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from torch import Tensor, nn

from sr_cli.archs.edsr import EDSRParams
from sr_cli.archs.mdsr import MDSRParams
from sr_cli.archs.rrdb import RRDBParams
from sr_cli.archs.runtime import AnyModule, AnyParams, SRNet, build_module, to_srnets
from sr_cli.archs.vdsr import VDSRParams
from sr_cli.errors import CheckpointError
from sr_cli.train.options import TrainOptions
from sr_cli.train.recipes import RRDB_GROW_CHANNELS

_PARAMS_BY_FAMILY: dict[str, type] = {"edsr": EDSRParams, "mdsr": MDSRParams, "rrdb": RRDBParams, "vdsr": VDSRParams}


def params_for(options: TrainOptions) -> AnyParams:
    """The Params dataclass of the run's network (recipe sizes, --blocks/--features overrides)."""
    recipe = options.recipe
    if recipe.family == "edsr":
        return EDSRParams(n_resblocks=options.blocks, n_feats=options.features, scale=options.scale,
                          res_scale=recipe.res_scale, rgb_range=255.0)
    if recipe.family == "mdsr":
        return MDSRParams(n_resblocks=options.blocks, n_feats=options.features, scales=tuple(options.scales),
                          res_scale=recipe.res_scale, rgb_range=255.0)
    if recipe.family == "rrdb":
        return RRDBParams(num_in_ch=3, num_out_ch=3, num_feat=options.features, num_block=options.blocks,
                          num_grow_ch=RRDB_GROW_CHANNELS, scale=options.scale)
    return VDSRParams(num_layers=options.blocks, num_features=options.features)


def params_to_json(params: AnyParams) -> str:
    return json.dumps(asdict(params))


def params_from_json(family: str, text: str, where: str) -> AnyParams:
    """Rebuild a Params dataclass from `sr.hyperparameters` JSON (lists back to tuples)."""
    cls = _PARAMS_BY_FAMILY.get(family)
    if cls is None:
        raise CheckpointError(f"{where}: family {family!r} cannot be trained by sr train")
    try:
        raw: dict[str, Any] = json.loads(text)
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**values)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{where}: hyperparameters {text!r} do not describe a {family} model ({error})") from None


class TrainNet(nn.Module):
    """forward(x, scale): the module at `scale` through its SRNet view ([0, 1] in, [0, 1]-range out).

    Only `module` is registered: the SRNet views share it (MDSR: one view per scale), so the state
    dict is the module's, key for key, under the prefix "module.".
    """

    def __init__(self, module: AnyModule) -> None:
        super().__init__()
        self.module = module
        self._views: dict[int, SRNet] = to_srnets(module)

    def forward(self, x: Tensor, scale: int) -> Tensor:
        view = self._views[1] if 1 in self._views else self._views[scale]
        return view(x)


def build_network(options: TrainOptions) -> tuple[AnyModule, AnyParams]:
    params = params_for(options)
    return build_module(options.recipe.family, params), params
