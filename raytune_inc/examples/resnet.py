"""A small ResNet-style network on scikit-learn's digits upscaled to 32x32: a convolutional model where int8 kernels pay.

Two residual stages of 64 and 128 channels with BatchNorm, trained once (a minute or two on
two cores) and cached like the digits CNN. `accuracy` is the evaluation function (top-1 on
the 540 test images), `calibration_batches` the calibration data.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from . import digits

SIZE = 32


class Block(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a residual connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class DigitsResNet(nn.Module):
    def __init__(self, width: int = 64):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.stage1 = Block(width)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False)
        self.bn_down = nn.BatchNorm2d(2 * width)
        self.stage2 = Block(2 * width)
        self.fc = nn.Linear(2 * width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        x = self.stage1(x)
        x = F.relu(self.bn_down(self.down(x)))
        x = self.stage2(x)
        return self.fc(x.mean((2, 3)))


def upscale(images: torch.Tensor) -> torch.Tensor:
    return F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False)


def dataset() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The digits split of `digits.dataset`, each image upscaled to 32x32."""
    x_train, y_train, x_test, y_test = digits.dataset()
    return upscale(x_train), y_train, upscale(x_test), y_test


def trained_model(cache: str | Path = "runs/digits_resnet.pt", epochs: int = 4, width: int = 64) -> DigitsResNet:
    """The trained FP32 model, from `cache` if it is there (weights only, loaded without pickle); `width`: the first
    stage's channels (the second has twice as many)."""
    cache = Path(cache)
    if cache.exists():
        model = DigitsResNet(width)
        model.load_state_dict(torch.load(cache, weights_only=True))
        return model.eval()
    torch.manual_seed(0)
    model = DigitsResNet(width)
    x, y, _, _ = dataset()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same weights on every machine and run
    try:
        model.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(y)).split(64):
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                optimizer.step()
        # BatchNorm statistics of the final weights: a cumulative average over the training set.
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.reset_running_stats()
                    module.momentum = None
            for batch in x.split(128):
                model(batch)
            for module in model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.momentum = 0.1
    finally:
        torch.set_num_threads(threads)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cache)
    return model.eval()


class TestAccuracy(digits.TestAccuracy):
    """eval_fn: top-1 accuracy on the 540 upscaled test images, on the model's device."""

    def __init__(self):
        super().__init__(dataset)


def calibration_batches(n: int = 4, size: int = 32) -> list[torch.Tensor]:
    return digits.calibration_batches(n, size, dataset)
