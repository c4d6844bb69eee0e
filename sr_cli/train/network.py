"""The trained network: the family's bare module built from the recipe, and the [0, 1] view training uses.

Training goes through `SRNet` (archs/runtime.py), so value-range conventions (EDSR/MDSR's 0..255) stay
in one place, and what is trained is exactly what `sr upscale` runs.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from torch import Tensor, nn

from sr_cli.archs.descriptor import HyperparameterError, TrainSizes
from sr_cli.archs.families import descriptor_for
from sr_cli.archs.runtime import AnyModule, AnyParams, SRNet, build_module, to_srnets
from sr_cli.errors import CheckpointError
from sr_cli.train.options import TrainOptions


def params_for(options: TrainOptions) -> AnyParams:
    """The Params dataclass of the run's network (recipe sizes, --blocks/--features overrides)."""
    recipe = options.recipe
    descriptor = descriptor_for(recipe.family)
    assert descriptor.train_params is not None, f"recipe {recipe.name} names a family sr cannot train"
    sizes = TrainSizes(blocks=options.blocks, features=options.features, scales=tuple(options.scales),
                       res_scale=recipe.res_scale)
    params: AnyParams = descriptor.train_params(sizes)
    return params


def params_to_json(params: AnyParams) -> str:
    return json.dumps(asdict(params))


def params_from_json(family: str, text: str, where: str) -> AnyParams:
    """Rebuild a Params dataclass from `sr.hyperparameters` JSON, checked against the family's schema."""
    try:
        descriptor = descriptor_for(family)
    except ValueError:
        descriptor = None
    if descriptor is None or descriptor.train_params is None:
        raise CheckpointError(f"{where}: family {family!r} cannot be trained by sr train")
    try:
        raw: Any = json.loads(text)
        params: AnyParams = descriptor.params_from(raw, require_all=False)
        return params
    except (ValueError, HyperparameterError) as error:
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
