"""A tiny model, its eval function and calibration data, named as module:name by the command-line tests."""

from __future__ import annotations

import torch
from torch import nn


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))


def _inputs() -> torch.Tensor:
    return torch.randn(256, 8, generator=torch.Generator().manual_seed(1))


def accuracy(m: nn.Module) -> float:
    """Agreement of the model's top class with the FP32 model's on fixed inputs (1.0 for the FP32 model)."""
    x = _inputs()
    with torch.no_grad():
        reference = model()(x).argmax(1)
        return float((m(x).argmax(1) == reference).float().mean())


def calibration() -> list[torch.Tensor]:
    return list(_inputs().split(64))


def example() -> torch.Tensor:
    """One batch to time the models on."""
    return _inputs()[:64]


NOT_A_MODEL = 42
