"""Train a 64-64-64-10 MLP with 4-bit weights and activations on scikit-learn's digits.

Deterministic (fixed seeds, deterministic algorithms, one thread). Writes, next to this
script:

* ``digits_mlp_w4a4.pt``: the model exported with ``torch.export`` (``hwgen build`` input);
* ``digits_mlp_w4a4.json``: test accuracy, split seed, epochs...;
* ``digits_test_x.npy`` (float32 raw pixels 0..16, ``[360, 64]``) and ``digits_test_y.npy``
  (int64 labels): the held-out test set.

Run: ``python examples/train_digits_mlp.py``
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from hwgen.nn import QuantIdentity, QuantLinear, QuantReLU

HERE = Path(__file__).resolve().parent
SPLIT_SEED = 0
TORCH_SEED = 0
EPOCHS = 40
BATCH = 32
LR = 1e-2
BITS = 4
ACT_SCALE = 0.25


def model() -> nn.Sequential:
    return nn.Sequential(
        QuantIdentity(bits=BITS, signed=False, scale=1.0),     # raw pixels 0..16 -> 0..15
        QuantLinear(64, 64, weight_bits=BITS),
        nn.BatchNorm1d(64),
        QuantReLU(bits=BITS, scale=ACT_SCALE),
        QuantLinear(64, 64, weight_bits=BITS),
        nn.BatchNorm1d(64),
        QuantReLU(bits=BITS, scale=ACT_SCALE),
        QuantLinear(64, 10, bias=True, weight_bits=BITS, input_scale=ACT_SCALE),
    )


def accuracy(net, x, y) -> float:
    with torch.no_grad():
        return float((net(x).argmax(dim=1) == y).float().mean())


def seed():
    """Fixed seeds, deterministic kernels, one thread: the same model on every run."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    random.seed(TORCH_SEED)
    np.random.seed(TORCH_SEED)
    torch.manual_seed(TORCH_SEED)


def data():
    """The digits split as tensors: ``(x_train, y_train, x_test, y_test)``."""
    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=360, random_state=SPLIT_SEED, stratify=y)
    return tuple(torch.from_numpy(a) for a in (x_train, y_train, x_test, y_test))


def train(net, xt, yt, xv, yv, epochs=EPOCHS, lr=LR):
    """Adam with a cosine schedule, minibatches in a seeded order."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    gen = torch.Generator().manual_seed(TORCH_SEED)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), BATCH):
            idx = order[i:i + BATCH]
            if len(idx) < 2:
                continue
            loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if epoch % 10 == 9 or epoch == epochs - 1:
            net.eval()
            print(f"epoch {epoch + 1:3d}  loss {loss.item():.4f}  "
                  f"train {accuracy(net, xt, yt):.4f}  test {accuracy(net, xv, yv):.4f}")
    net.eval()
    return net


def export(net, xv, path: Path):
    """``torch.export`` the model for any batch size (one vector or thousands)."""
    batch = torch.export.Dim("batch", min=1)
    ep = torch.export.export(net, (xv[:8],), dynamic_shapes=({0: batch},))
    with open(path, "wb") as file:  # a .pt suffix is fine by hwgen
        torch.export.save(ep, file)


def write_record(path: Path, model: str, architecture: str, train_vectors: int,
                 test_vectors: int, train_acc: float, test_acc: float, **more):
    """The example's JSON record: data, seeds, schedule, bits and accuracies."""
    record = {
        "model": model,
        "architecture": architecture,
        "dataset": "sklearn.datasets.load_digits",
        "train_vectors": train_vectors,
        "test_vectors": test_vectors,
        "split_seed": SPLIT_SEED,
        "torch_seed": TORCH_SEED,
        "epochs": EPOCHS,
        "batch": BATCH,
        "lr": LR,
        "weight_bits": BITS,
        "activation_bits": BITS,
        "train_accuracy": round(train_acc, 4),
        "test_accuracy": round(test_acc, 4),
        "torch": torch.__version__,
        **more,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")


def main():
    start = time.time()
    seed()
    xt, yt, xv, yv = data()
    net = train(model(), xt, yt, xv, yv)

    test_acc = accuracy(net, xv, yv)
    train_acc = accuracy(net, xt, yt)
    export(net, xv, HERE / "digits_mlp_w4a4.pt")
    np.save(HERE / "digits_test_x.npy", xv.numpy())
    np.save(HERE / "digits_test_y.npy", yv.numpy())
    write_record(HERE / "digits_mlp_w4a4.json", "digits_mlp_w4a4.pt",
                 "QuantIdentity(4b) - 64x64 - BN - QuantReLU(4b) - 64x64 - BN - "
                 "QuantReLU(4b) - 64x10 (+int32 bias)", len(xt), len(xv), train_acc, test_acc)
    print(f"test accuracy {test_acc:.4f} ({len(xv)} held-out digits), "
          f"{time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
