"""Step learning-rate schedules of the recipes, as pure functions of the update index.

lr(t) = base * gamma ** k, with k the number of milestones <= t (ESRGAN stage 2: 50k/100k/200k/300k),
or k = t // every (EDSR/ESRGAN stage 1: halved every 2e5 updates; VDSR: /10 every 20 epochs).
No hidden state: resuming at update t gives lr(t) again, exactly.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepSchedule:
    base_lr: float
    gamma: float
    every: int | None  # decay every this many updates; None: at the milestones
    milestones: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.every is not None and self.every < 1:
            raise ValueError(f"a schedule decays every >= 1 updates, not {self.every}; pass None for milestones")

    def lr_at(self, update: int) -> float:
        """Learning rate of the update with 0-based index `update`."""
        k = update // self.every if self.every is not None else bisect.bisect_right(self.milestones, update)
        return self.base_lr * self.gamma ** k

    def apply(self, optimizer: torch.optim.Optimizer, update: int) -> float:
        lr = self.lr_at(update)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state(self) -> dict[str, object]:
        return {"base_lr": self.base_lr, "gamma": self.gamma, "every": self.every, "milestones": list(self.milestones)}
