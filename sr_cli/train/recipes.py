"""The papers' training recipes: one frozen `Recipe` per `--model` name, each value with its source.

Every default here is overridable from the command line or the TOML file (`options.py`); the recipe
is only where the defaults come from. Sources (cited again in docs/train.md):

- EDSR / MDSR: Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution",
  CVPRW 2017, Sec. 4.2 (48x48 LR patches, flips + 90-degree rotations, L1, Adam 0.9/0.999/1e-8,
  lr 1e-4 halved every 2e5 updates, batch 16, x2 model as initialisation of x3/x4) and Sec. 3.2
  (MDSR: one scale per minibatch). Model sizes: Table 1 / EDSR-PyTorch (baseline 16x64; EDSR 32x256
  with residual scaling 0.1; MDSR 80x64). Total 3e5 updates = EDSR-PyTorch's 300 epochs x 1000.
- VDSR: Kim et al., "Accurate Image Super-Resolution Using Very Deep Convolutional Networks",
  CVPR 2016, Sec. 3.2-4.1 (residual learning on the bicubic-upscaled Y, MSE, SGD momentum 0.9,
  weight decay 1e-4, lr 0.1 divided by 10 every 20 epochs for 80 epochs, batch 64, 41x41 patches,
  adjustable gradient clipping to [-theta/lr, theta/lr], scales 2, 3, 4 mixed). The paper gives no
  value for theta; 0.4 is the reference PyTorch code's default (twtygqyy/pytorch-vdsr `--clip`).
- ESRGAN: Wang et al., "ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks", ECCVW
  2018, Sec. 4.1 (128x128 HR patches, batch 16, PSNR model: L1, lr 2e-4 halved every 2e5 updates;
  GAN model initialised from it: L_percep + 5e-3 L_adv + 1e-2 L1, lr 1e-4 halved at 50k, 100k,
  200k, 300k; Adam beta1 0.9, beta2 0.999), Sec. 3.2 (relativistic average discriminator, both
  networks), Sec. 3.3 (perceptual loss on VGG19 conv5_4 features before activation). Total updates
  (not in the paper): 1e6 and 4e5, BasicSR's options for the released models.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from sr_cli.archs.descriptor import FamilyName
from sr_cli.errors import UsageError

OptimizerName = Literal["adam", "sgd"]
PixelLoss = Literal["l1", "mse", "l2"]  # l2: VDSR's (1/2) ||r - f(x)||^2 per sample, averaged over the batch

# The discriminator's input side (ESRGAN: "128x128 HR patches"); its linear layer is sized for it.
DISCRIMINATOR_HR_PATCH = 128


@dataclass(frozen=True)
class Recipe:
    """One paper's training recipe. None means "not a number of this recipe", never a hidden 0."""

    name: str  # the --model value
    family: FamilyName  # a family whose descriptor has train_params
    scales: tuple[int, ...]  # scales the recipe can train (MDSR/VDSR: all of them at once)
    multi_scale: bool  # one model for every scale in `scales` (MDSR, VDSR)
    blocks: int  # residual blocks (EDSR/MDSR), RRDBs, or conv layers (VDSR)
    features: int
    res_scale: float  # EDSR residual scaling (1.0 where the paper uses none)
    patch: int | None  # LR patch side (VDSR: side of the bicubic-upscaled input patch); None: hr_patch // scale
    hr_patch: int | None  # fixed HR patch side instead (ESRGAN: the discriminator's 128); None: from `patch`
    batch: int
    steps: int | None  # total optimizer updates; None: `epochs` passes over the patch grid (VDSR)
    epochs: int | None  # the length in epochs, when `steps` is None (counted once the data is known)
    optimizer: OptimizerName
    lr: float
    betas: tuple[float, float]
    eps: float
    momentum: float  # SGD only
    weight_decay: float
    lr_gamma: float  # the lr is multiplied by this at each decay
    lr_every: int | None  # decay every this many updates (EDSR, ESRGAN stage 1)
    lr_every_epochs: int | None  # decay every this many epochs of the patch grid (VDSR)
    lr_milestones: tuple[int, ...]  # decay at these updates instead (ESRGAN stage 2)
    pixel_loss: PixelLoss
    clip_theta: float  # VDSR adjustable gradient clipping: clip to [-theta/lr, theta/lr]; 0 = off (a user option)
    gan: bool  # ESRGAN stage 2: discriminator + perceptual + RaGAN
    needs_init: bool  # stage 2 starts from a stage-1 checkpoint
    perceptual_weight: float = 1.0
    adversarial_weight: float = 5e-3
    pixel_weight: float = 1e-2
    source: str = ""

    def __post_init__(self) -> None:
        # Exactly one way to know each number: a recipe that left two open (or none) is a programming error.
        if (self.patch is None) == (self.hr_patch is None):
            raise ValueError(f"recipe {self.name}: give exactly one of patch and hr_patch")
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(f"recipe {self.name}: give exactly one of steps and epochs")
        decays = [self.lr_every is not None, self.lr_every_epochs is not None, bool(self.lr_milestones)]
        if sum(decays) != 1:
            raise ValueError(f"recipe {self.name}: give exactly one of lr_every, lr_every_epochs, lr_milestones")
        if self.lr_every_epochs is not None and self.epochs is None:
            raise ValueError(f"recipe {self.name}: lr_every_epochs needs an epoch-based recipe")


EDSR_BASELINE = Recipe(
    name="edsr-baseline", family="edsr", scales=(2, 3, 4), multi_scale=False, blocks=16, features=64,
    res_scale=1.0, patch=48, hr_patch=None, batch=16, steps=300_000, epochs=None, optimizer="adam", lr=1e-4,
    betas=(0.9, 0.999), eps=1e-8, momentum=0.0, weight_decay=0.0, lr_gamma=0.5, lr_every=200_000,
    lr_every_epochs=None, lr_milestones=(), pixel_loss="l1", clip_theta=0.0, gan=False, needs_init=False,
    source="Lim et al. 2017, Sec. 4.2",
)
ESRGAN_PSNR = Recipe(
    name="esrgan-psnr", family="rrdb", scales=(4, 2), multi_scale=False, blocks=23, features=64, res_scale=1.0,
    patch=None, hr_patch=DISCRIMINATOR_HR_PATCH, batch=16, steps=1_000_000, epochs=None, optimizer="adam",
    lr=2e-4, betas=(0.9, 0.999), eps=1e-8, momentum=0.0, weight_decay=0.0, lr_gamma=0.5, lr_every=200_000,
    lr_every_epochs=None, lr_milestones=(), pixel_loss="l1", clip_theta=0.0, gan=False, needs_init=False,
    source="Wang et al. 2018, Sec. 4.1",
)

RECIPES: dict[str, Recipe] = {
    recipe.name: recipe for recipe in (
        EDSR_BASELINE,
        replace(EDSR_BASELINE, name="edsr", blocks=32, features=256, res_scale=0.1,
                source="Lim et al. 2017, Sec. 3.1 + 4.2"),
        replace(EDSR_BASELINE, name="mdsr-baseline", family="mdsr", multi_scale=True,
                source="Lim et al. 2017, Sec. 3.2 + 4.2"),
        replace(EDSR_BASELINE, name="mdsr", family="mdsr", multi_scale=True, blocks=80,
                source="Lim et al. 2017, Sec. 3.2 + 4.2"),
        Recipe(
            name="vdsr", family="vdsr", scales=(2, 3, 4), multi_scale=True, blocks=20, features=64, res_scale=1.0,
            patch=41, hr_patch=None, batch=64, steps=None, epochs=80, optimizer="sgd", lr=0.1, betas=(0.9, 0.999),
            eps=1e-8, momentum=0.9, weight_decay=1e-4, lr_gamma=0.1, lr_every=None, lr_every_epochs=20,
            lr_milestones=(), pixel_loss="l2", clip_theta=0.4, gan=False, needs_init=False,
            source="Kim et al. 2016, Sec. 3.2-4.1",
        ),
        ESRGAN_PSNR,
        replace(ESRGAN_PSNR, name="esrgan", steps=400_000, lr=1e-4, lr_every=None,
                lr_milestones=(50_000, 100_000, 200_000, 300_000), gan=True, needs_init=True,
                source="Wang et al. 2018, Sec. 3.2, 3.3, 4.1"),
    )
}


def recipe_for(model: str) -> Recipe:
    """The recipe of a --model name; UsageError listing the names for anything else."""
    try:
        return RECIPES[model]
    except KeyError:
        raise UsageError(f"--model {model!r} has no training recipe; choose one of: {', '.join(RECIPES)}") from None


def default_patch(recipe: Recipe, scale: int) -> int:
    """The recipe's LR patch side at `scale` (ESRGAN: 128 HR pixels, so 128 // scale LR pixels)."""
    if recipe.patch is not None:
        return recipe.patch
    assert recipe.hr_patch is not None  # Recipe.__post_init__: one of the two
    return recipe.hr_patch // scale
