"""`torch.compile` behind a flag, with a fallback that never fails a run.

Compiling can fail in many ways a user cannot fix (no C++ compiler for inductor on the CPU, no Triton on
an old GPU, an operator dynamo does not trace, a recompile limit), and it fails at the first *call*, not at
`torch.compile()`. `CompiledForward` compiles on its first call; if compiling or running the compiled
graph raises anything but out-of-memory (which the tile pipeline handles, and which eager would hit too),
it records why, runs that call eagerly, and stays eager for the rest of the run.

CUDA graphs (`mode="reduce-overhead"`) are not used: tile windows change shape at the image borders and
after an out-of-memory halving, each new shape records a new graph, and a graph only saves kernel-launch
time, which is small beside the seconds of convolution work in one SR tile.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from sr_cli.engine.memory import is_out_of_memory

Compiler = Callable[[nn.Module], Callable[[Tensor], Tensor]]


def default_compiler(module: nn.Module) -> Callable[[Tensor], Tensor]:
    # dynamic=None: the first shape is compiled static, a second shape makes dynamo compile a dynamic graph
    compiled: Callable[[Tensor], Tensor] = torch.compile(module, dynamic=None)
    return compiled


class CompiledForward(nn.Module):
    """`module` compiled on first use, eager for good after a compile failure (`fallback_reason` says why).

    An nn.Module holding the original as `module`, so the engine's hooks (progress counts conv layers)
    still find its layers.
    """

    def __init__(self, module: nn.Module, compiler: Compiler | None = None) -> None:
        super().__init__()
        self.module = module
        self._compiler = compiler
        self._compiled: Callable[[Tensor], Tensor] | None = None
        self.fallback_reason: str | None = None  # None: compiled (or not tried yet)

    @property
    def compiled(self) -> bool:
        """True once a compiled call has succeeded and no fallback happened."""
        return self._compiled is not None and self.fallback_reason is None

    def forward(self, x: Tensor) -> Tensor:
        if self.fallback_reason is None:
            try:
                if self._compiled is None:
                    self._compiled = (self._compiler or default_compiler)(self.module)
                return self._compiled(x)
            except Exception as error:  # noqa: BLE001 -- any compile failure falls back; OOM is the caller's
                if is_out_of_memory(error):
                    raise
                first_line = (str(error).strip().splitlines() or [""])[0][:200]
                self.fallback_reason = f"{type(error).__name__}: {first_line}".rstrip(": ")
                self._compiled = None
        return self.module(x)
