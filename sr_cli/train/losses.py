"""Losses of the recipes: pixel (L1 / MSE / VDSR's L2) and the relativistic average GAN (ESRGAN Sec. 3.2).

RaGAN (Jolicoeur-Martineau 2018, as ESRGAN eq. 1-2): D_Ra(a, b) = sigmoid(C(a) - E_b[C(b)]) with C the
raw discriminator output. Both networks get both terms:
    L_D = -E_real[log D_Ra(real, fake)] - E_fake[log(1 - D_Ra(fake, real))]
    L_G = -E_real[log(1 - D_Ra(real, fake))] - E_fake[log D_Ra(fake, real)]
computed with binary cross-entropy on logits (numerically stable). The paper's sums are kept (BasicSR
halves both; with lr and loss weights from the paper, the sum is the paper's definition).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sr_cli.train.recipes import PixelLoss


def pixel_loss(kind: PixelLoss, output: Tensor, target: Tensor) -> Tensor:
    """Mean absolute (l1) or squared (mse) error over every element, or VDSR's l2 (Sec. 3.1: half the
    sum of squares per sample, averaged over the batch), in float32."""
    output, target = output.float(), target.float()
    if kind == "l1":
        return F.l1_loss(output, target)
    if kind == "l2":
        return 0.5 * ((output - target) ** 2).flatten(1).sum(1).mean()
    return F.mse_loss(output, target)


def _bce(logits: Tensor, real: bool) -> Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def ragan_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """L_D^Ra; `fake_logits` must come from a detached generator output."""
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    return _bce(real_logits - fake_logits.mean(), True) + _bce(fake_logits - real_logits.mean(), False)


def ragan_generator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """L_G^Ra; `real_logits` is detached (the generator cannot change the real images' scores)."""
    real_logits, fake_logits = real_logits.detach().float(), fake_logits.float()
    return _bce(real_logits - fake_logits.mean(), False) + _bce(fake_logits - real_logits.mean(), True)
