"""Built-in example for inc_conservative.py: a three-layer model on 8x8 inputs (like sklearn's digits),
a deterministic synthetic evaluation and calibration data. Imports torch only.

    model()        Conv2d(1, 16, 3, padding=1) -> ReLU -> Linear(1024, 64) -> ReLU -> Linear(64, 10), fixed seed
    evaluate(m)    agreement of m's argmax with the FP32 model's argmax on 512 fixed random inputs
    calib_data()   a DataLoader of 100 fixed random inputs, batch 25, yielding (input, label)
"""

from __future__ import annotations

import torch
from torch import nn

N_EVAL, BATCH = 512, 32
N_CALIB, CALIB_BATCH = 100, 25  # INC's default calibration_sampling_size is 100: 4 batches, no rounding up


class ThreeLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.fc1 = nn.Linear(16 * 8 * 8, 64)
        self.relu2 = nn.ReLU()
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv(x))
        x = self.relu2(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def _inputs(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g) * 16.0  # digits' pixel range, 0..16


def model() -> nn.Module:
    torch.manual_seed(0)
    return ThreeLayer().eval()


_EVAL_X = _inputs(N_EVAL, seed=1)
with torch.no_grad():
    _EVAL_Y = model()(_EVAL_X).argmax(1)


def evaluate(m: nn.Module) -> float:
    """Higher is better: fraction of inputs where m agrees with the FP32 model's prediction."""
    with torch.no_grad():
        pred = torch.cat([m(x).argmax(1) for x in _EVAL_X.split(BATCH)])
    return float((pred == _EVAL_Y).float().mean())


def calib_data() -> torch.utils.data.DataLoader:
    x = _inputs(N_CALIB, seed=2)
    ds = torch.utils.data.TensorDataset(x, torch.zeros(N_CALIB, dtype=torch.long))
    return torch.utils.data.DataLoader(ds, batch_size=CALIB_BATCH)
