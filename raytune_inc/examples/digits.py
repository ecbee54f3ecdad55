"""A small CNN on scikit-learn's handwritten digits (8x8 images, shipped with scikit-learn: no download).

`trained_model(cache)` trains it once (a few seconds on a CPU) and caches its weights;
`accuracy` is the evaluation function and `calibration_batches` the calibration data
that `raytune_inc.tune` takes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.norm = nn.LayerNorm(64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.relu(self.norm(self.fc1(x.flatten(1))))
        return self.fc2(x)


def dataset() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, test images, test labels): a fixed 70/30 split, pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    cut = int(0.7 * len(labels))
    train, test = order[:cut], order[cut:]
    return images[train], labels[train], images[test], labels[test]


def trained_model(cache: str | Path = "runs/digits_cnn.pt", epochs: int = 15) -> DigitsCNN:
    """The trained FP32 model, from `cache` if it is there (weights only, loaded without pickle)."""
    cache = Path(cache)
    if cache.exists():
        model = DigitsCNN()
        model.load_state_dict(torch.load(cache, weights_only=True))
        return model.eval()
    torch.manual_seed(0)
    model = DigitsCNN()
    x, y, _, _ = dataset()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same weights on every machine and run
    try:
        for _ in range(epochs):
            for batch in torch.randperm(len(y)).split(64):
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cache)
    return model.eval()


class TestAccuracy:
    """eval_fn: top-1 accuracy on the test split of `data` (this module's `dataset`, or another of its shape), on the
    model's device."""

    def __init__(self, data: Callable[[], tuple[torch.Tensor, ...]] = dataset):
        _, _, self.x, self.y = data()

    def __call__(self, model: nn.Module) -> float:
        device = next(model.parameters()).device
        with torch.no_grad():
            return float((model(self.x.to(device)).argmax(1).cpu() == self.y).float().mean())


def calibration_batches(n: int = 4, size: int = 64, data: Callable[[], tuple[torch.Tensor, ...]] = dataset) -> list[torch.Tensor]:
    """`n` batches of `size` training images of `data` (this module's `dataset`, or another of its shape)."""
    x, _, _, _ = data()
    return list(x[: n * size].split(size))
