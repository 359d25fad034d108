"""The shipped binarized MNIST example (examples/train_tfc_w1a1.py) loads and scores as
recorded."""

import json
from pathlib import Path

import numpy as np
import torch

import hwgen.nn  # noqa: F401  (registers hwgen::bipolar, needed by torch.export.load)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MODEL = EXAMPLES / "tfc_w1a1_mnist.pt"
RECORD = EXAMPLES / "tfc_w1a1_mnist.json"
TEST_X = EXAMPLES / "mnist_test_x.npy"
TEST_Y = EXAMPLES / "mnist_test_y.npy"


def test_test_set_arrays():
    x, y = np.load(TEST_X), np.load(TEST_Y)
    assert x.shape == (1000, 784) and x.dtype == np.uint8
    assert y.shape == (1000,) and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(10))
    record = json.loads(RECORD.read_text())
    assert record["test_vectors"] == len(x)


def test_exported_model_accuracy_matches_record():
    record = json.loads(RECORD.read_text())
    # An open file, as the compiler's frontend loads it: a path not ending in .pt2 makes
    # torch.export.load log a warning before it falls back to the same format.
    with open(MODEL, "rb") as file:
        net = torch.export.load(file).module()
    x = torch.from_numpy(np.load(TEST_X).astype(np.float32))
    y = torch.from_numpy(np.load(TEST_Y))
    with torch.no_grad():
        logits = net(x)
    assert logits.shape == (1000, 10)
    # Binary weights and activations: the logits are integers times the logit scale.
    steps = logits / record["logit_scale"]
    assert torch.equal(steps, steps.round())
    accuracy = float((logits.argmax(dim=1) == y).float().mean())
    assert round(accuracy, 4) == record["test_accuracy"]
    assert record["test_accuracy"] >= 0.85
