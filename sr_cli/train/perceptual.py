"""Perceptual loss (ESRGAN Sec. 3.3): L1 between VGG19 conv5_4 features taken BEFORE the ReLU.

The extractor is VGG19's `features` stack up to index 34 (conv5_4) under torchvision's key names, so
torchvision's ImageNet file loads key for key: every `features.*` tensor of the file must match ours
exactly, and the only other tensors allowed are the classifier's (`classifier.0/3/6`), which the
perceptual loss does not use. Inputs in [0, 1] are normalised with the ImageNet mean/std first.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sr_cli.errors import CheckpointError
from sr_cli.files.digest import ExpectedSha256

# torchvision's VGG19 ("E") configuration: channels per conv, "M" = max-pool.
_VGG19_LAYOUT: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                                        512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
CONV5_4_INDEX = 34  # features.34 is conv5_4; features.35 its ReLU (excluded: "before activation")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
# torchvision names its files <arch>-<first 8 hex digits of the sha256>.pth and checks that prefix on
# download (torch.hub check_hash); we check the same prefix (no full hash could be confirmed offline).
VGG19_SHA256 = ExpectedSha256.prefix("dcbb9e9d")
VGG19_FILENAME = "vgg19-dcbb9e9d.pth"
_CLASSIFIER_KEYS = frozenset(f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias"))


def _features_until(last_index: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for item in _VGG19_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = int(item)
    return nn.Sequential(*layers[: last_index + 1])


class VGG19Conv54(nn.Module):
    """VGG19 `features[0..34]`: [N,3,H,W] in [0,1] -> conv5_4 pre-activation features. Frozen."""

    mean: Tensor  # registered buffers
    std: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.features = _features_until(CONV5_4_INDEX)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Conv54:  # always inference mode: no dropout/BN anyway
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.features((x - self.mean) / self.std)


def load_vgg19_conv54(path: Path) -> VGG19Conv54:
    """The extractor with torchvision's ImageNet weights from `path` (never executed: weights_only)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        raise CheckpointError(f"{path}: cannot read VGG19 weights ({error}); delete it to download again") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a state dict; expected torchvision's {VGG19_FILENAME}")
    model = VGG19Conv54()
    ours = model.features.state_dict()
    features = {key[len("features."):]: value for key, value in state.items() if key.startswith("features.")}
    others = set(state) - {f"features.{k}" for k in features}
    wanted_extra = {k for k in features if k not in ours}
    if others - _CLASSIFIER_KEYS:
        raise CheckpointError(f"{path}: unexpected tensors {sorted(others - _CLASSIFIER_KEYS)[:4]}; "
                              f"expected torchvision's {VGG19_FILENAME}")
    # Layers after conv5_4 (features.35+ has no tensors in VGG19 without BN) are absent from ours.
    if wanted_extra:
        raise CheckpointError(f"{path}: unexpected feature tensors {sorted(wanted_extra)[:4]}; not VGG19")
    model.features.load_state_dict(features, strict=True)
    return model


def random_vgg19_conv54(seed: int) -> VGG19Conv54:
    """TEST ONLY: random weights (the loss is then meaningless); callers must say so in the log."""
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        return VGG19Conv54()
    finally:
        torch.random.set_rng_state(generator_state)


def perceptual_loss(extractor: VGG19Conv54, output: Tensor, target: Tensor) -> Tensor:
    """L1 between conv5_4 (pre-ReLU) features of output and target (target features carry no gradient)."""
    with torch.no_grad():
        target_features = extractor(target)
    return F.l1_loss(extractor(output).float(), target_features.float())
