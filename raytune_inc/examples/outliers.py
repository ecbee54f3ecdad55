"""A residual MLP with a few int8-sensitive layers: inputs with outlier channels, as large models have.

28 residual blocks of one Linear each and a head: 29 Linear ops. The input of 7 of the blocks
has two channels scaled up 40 times (the Linear's weights scaled down to match, so the FP32
function is the same): a per-tensor int8 range that spans the outliers leaves the other
channels a few levels only, so static int8 hurts those 7 layers and few others. Random
weights, seeded; `OutputFidelity` is the evaluation function (mean cosine similarity of the
outputs to the FP32 model's, 1.0 for it), `calibration_batches` the calibration data. No data
to download, nothing to train.
"""

from __future__ import annotations

import time

import torch
from torch import nn

WIDTH, BLOCKS = 64, 28
SENSITIVE = (2, 6, 9, 13, 17, 21, 25)  # the blocks whose input has outlier channels
OUTLIER = 40.0


class Block(nn.Module):
    def __init__(self, width: int, outliers: bool):
        super().__init__()
        self.fc = nn.Linear(width, width)
        scale = torch.ones(width)
        if outliers:
            scale[:2] = OUTLIER
            with torch.no_grad():
                self.fc.weight[:, :2] /= OUTLIER  # the same function in FP32
        self.register_buffer("scale", scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.3 * torch.tanh(self.fc(x * self.scale))


class OutlierMLP(nn.Module):
    def __init__(self, width: int = WIDTH, blocks: int = BLOCKS, sensitive: tuple[int, ...] = SENSITIVE):
        super().__init__()
        self.blocks = nn.Sequential(*(Block(width, i in sensitive) for i in range(blocks)))
        self.head = nn.Linear(width, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))


def model(seed: int = 0) -> OutlierMLP:
    torch.manual_seed(seed)
    return OutlierMLP().eval()


def inputs(n: int = 256, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, WIDTH, generator=torch.Generator().manual_seed(seed))


class OutputFidelity:
    """eval_fn: mean cosine similarity of the outputs to the FP32 model's on fixed inputs; `pad` seconds: every call
    takes at least that long (a stand-in for a real evaluation's cost)."""

    def __init__(self, reference: nn.Module, pad: float = 0.0):
        self.x = inputs()
        self.pad = pad
        with torch.no_grad():
            self.expected = reference(self.x)

    def __call__(self, m: nn.Module) -> float:
        start = time.perf_counter()
        device = next(m.parameters()).device
        with torch.no_grad():
            out = m(self.x.to(device)).float().cpu()
        value = float(nn.functional.cosine_similarity(out, self.expected, dim=-1).mean())
        if self.pad:
            time.sleep(max(0.0, self.pad - (time.perf_counter() - start)))
        return value


def calibration_batches(n: int = 2, size: int = 64) -> list[torch.Tensor]:
    return list(inputs(n * size, seed=2).split(size))
