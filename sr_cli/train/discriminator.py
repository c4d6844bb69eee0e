"""ESRGAN's VGG-style discriminator for 128x128 patches (ESRGAN Sec. 3.2/4.1, SRGAN Fig. 4).

Ten 3x3/4x4 convs in five stages (64, 128, 256, 512, 512 channels; the second conv of each stage has
stride 2 and BatchNorm), LeakyReLU 0.2, then Linear(512*4*4 -> 100) -> LeakyReLU -> Linear(100 -> 1).
Input RGB in [0, 1]; output one raw logit per image (the RaGAN losses apply the sigmoid).
"""
from __future__ import annotations

from torch import Tensor, nn

LRELU_SLOPE = 0.2


def _stage(in_ch: int, out_ch: int, first_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=not first_norm)]
    if first_norm:
        layers.append(nn.BatchNorm2d(out_ch, affine=True))
    layers += [nn.LeakyReLU(LRELU_SLOPE, inplace=True),
               nn.Conv2d(out_ch, out_ch, 4, 2, 1, bias=False), nn.BatchNorm2d(out_ch, affine=True),
               nn.LeakyReLU(LRELU_SLOPE, inplace=True)]
    return layers


class VGGStyleDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 3, features: int = 64, input_size: int = 128) -> None:
        super().__init__()
        if input_size != 128:
            raise ValueError(f"the VGG-style discriminator is built for 128x128 inputs, got {input_size}")
        f = features
        widths = [f, 2 * f, 4 * f, 8 * f, 8 * f]
        layers: list[nn.Module] = []
        previous = in_channels
        for index, width in enumerate(widths):
            layers += _stage(previous, width, first_norm=index > 0)
            previous = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(8 * f * 4 * 4, 100), nn.LeakyReLU(LRELU_SLOPE, inplace=True), nn.Linear(100, 1)
        )
        self.input_size = input_size

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"discriminator input must be {self.input_size}x{self.input_size}, got {tuple(x.shape)}")
        return self.classifier(self.features(x).flatten(1))
