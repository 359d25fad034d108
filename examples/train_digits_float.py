"""Train a float 64-64-64-10 MLP (batch norm, ReLU) on scikit-learn's digits, for
post-training quantization (``hwgen build digits_mlp_float.pt2 --bits w4a4 --calibrate ...``).
Deterministic, with the split, seeds and schedule of ``train_digits_mlp.py``. Writes, next to
this script:

* ``digits_mlp_float.pt2``: the float model exported with ``torch.export``;
* ``digits_mlp_float.json``: its test accuracy;
* ``digits_calib_x.npy``: 256 training vectors (float32 pixels) to calibrate on.

Run: ``python examples/train_digits_float.py``
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from train_digits_mlp import accuracy, data, export, seed, train

HERE = Path(__file__).resolve().parent
CALIBRATION = 256


def model() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(),
        nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(),
        nn.Linear(64, 10),
    )


def main():
    start = time.time()
    seed()
    xt, yt, xv, yv = data()
    net = train(model(), xt, yt, xv, yv)
    test_acc = accuracy(net, xv, yv)
    export(net, xv, HERE / "digits_mlp_float.pt2")
    np.save(HERE / "digits_calib_x.npy", xt[:CALIBRATION].numpy())
    record = {"model": "digits_mlp_float.pt2",
              "architecture": "64x64 - BN - ReLU - 64x64 - BN - ReLU - 64x10 (float)",
              "dataset": "sklearn.datasets.load_digits", "test_vectors": len(xv),
              "calibration_vectors": CALIBRATION, "test_accuracy": round(test_acc, 4),
              "torch": torch.__version__}
    (HERE / "digits_mlp_float.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"test accuracy {test_acc:.4f} ({len(xv)} held-out digits), "
          f"{time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
