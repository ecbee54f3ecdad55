"""The digits CNN (`raytune_inc.examples.digits`) as a benchmark model, for inc_conservative.py and
backend.py alike. Imports torch only (scikit-learn loads the data); needs the repository
root on sys.path (`--path .`), where `raytune_inc` imports nothing else until asked.

    model()        the trained DigitsCNN, weights from runs/digits_cnn.pt (trained and cached on first use)
    evaluate(m)    top-1 accuracy on the fixed test split (539 images)
    calib_data()   a DataLoader of the first 100 training images, batch 25, yielding (input, label)
"""

from __future__ import annotations

import os

import torch

from raytune_inc.examples.digits import TestAccuracy, calibration_batches, trained_model

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "runs", "digits_cnn.pt")
N_CALIB, CALIB_BATCH = 100, 25  # INC's default calibration_sampling_size is 100: 4 batches, no rounding up


def model() -> torch.nn.Module:
    return trained_model(CACHE)


evaluate = TestAccuracy()


def calib_data() -> torch.utils.data.DataLoader:
    x = torch.cat(calibration_batches(n=N_CALIB // CALIB_BATCH, size=CALIB_BATCH))
    ds = torch.utils.data.TensorDataset(x, torch.zeros(len(x), dtype=torch.long))
    return torch.utils.data.DataLoader(ds, batch_size=CALIB_BATCH)
