"""The families sr knows, in detection order. A new family is its `archs/<family>.py` (module, Params
dataclass, DESCRIPTOR) plus one line here (and its name in `descriptor.FamilyName`); docs/design.md."""
from __future__ import annotations

from typing import Any

from torch import nn

from sr_cli.archs import edsr, mdsr, rrdb, srvgg, vdsr
from sr_cli.archs.descriptor import FamilyDescriptor

FAMILIES: tuple[FamilyDescriptor[Any], ...] = (
    edsr.DESCRIPTOR,
    mdsr.DESCRIPTOR,
    rrdb.DESCRIPTOR,
    vdsr.DESCRIPTOR,
    srvgg.DESCRIPTOR,
)
FAMILY_NAMES: tuple[str, ...] = tuple(descriptor.name for descriptor in FAMILIES)


def descriptor_for(family: str) -> FamilyDescriptor[Any]:
    """The descriptor of a family name; ValueError naming the known ones for anything else."""
    for descriptor in FAMILIES:
        if descriptor.name == family:
            return descriptor
    raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILY_NAMES)}")


def descriptor_of(module: nn.Module) -> FamilyDescriptor[Any]:
    """The descriptor whose module class built `module`."""
    for descriptor in FAMILIES:
        if type(module) is descriptor.module_class:
            return descriptor
    raise TypeError(f"not an sr architecture: {type(module).__name__}")
