"""Prune the digits MLP of ``train_digits_mlp.py`` two ways, fine-tune, and export both.

Deterministic (the dense model is retrained with the same seeds first). Writes, next to this
script:

* ``digits_mlp_w4a4_pruned75.pt``: 75% of the weights of every ``QuantLinear`` removed by
  magnitude (``torch.nn.utils.prune.l1_unstructured``), fine-tuned with the masks attached,
  and exported with them still attached (the program multiplies ``weight_orig`` by
  ``weight_mask``);
* ``digits_mlp_w4a4_neurons50.pt``: half the neurons of both hidden layers removed by L2 norm
  (``prune.ln_structured`` over rows), fine-tuned, then made permanent (``prune.remove``):
  the removed neurons' weight rows are zero, so their outputs are constants;
* ``digits_mlp_w4a4_pruned75.json`` and ``digits_mlp_w4a4_neurons50.json``: how each was made
  and its test accuracy.

Run: ``python examples/train_digits_pruned.py``
"""

from __future__ import annotations

import json
import time

import torch
from torch.nn.utils import prune
from train_digits_mlp import HERE, accuracy, data, export, model, seed, train

from hwgen.nn import QuantLinear

#: Fine-tuning after pruning: epochs and learning rate.
FINE_TUNE_EPOCHS = 30
FINE_TUNE_LR = 3e-3


def _linears(net):
    return [m for m in net if isinstance(m, QuantLinear)]


def _density(net) -> list[float]:
    return [round(float((m.weight != 0).float().mean()), 4) for m in _linears(net)]


def _write(net, name, how, dense_acc, xt, yt, xv, yv):
    export(net, xv, HERE / f"{name}.pt")
    record = {
        "model": f"{name}.pt",
        "base": "digits_mlp_w4a4.pt (retrained with the same seeds)",
        "pruning": how,
        "fine_tune_epochs": FINE_TUNE_EPOCHS,
        "fine_tune_lr": FINE_TUNE_LR,
        "weight_density": _density(net),
        "dense_test_accuracy": round(dense_acc, 4),
        "train_accuracy": round(accuracy(net, xt, yt), 4),
        "test_accuracy": round(accuracy(net, xv, yv), 4),
        "torch": torch.__version__,
    }
    (HERE / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{name}: density {record['weight_density']}, test accuracy "
          f"{record['test_accuracy']:.4f} (dense {dense_acc:.4f})")


def main():
    start = time.time()
    seed()
    xt, yt, xv, yv = data()
    dense = train(model(), xt, yt, xv, yv)
    dense_acc = accuracy(dense, xv, yv)
    state = {k: v.clone() for k, v in dense.state_dict().items()}

    # Unstructured: the smallest 75% of each layer's weights, masks kept attached.
    net = model()
    net.load_state_dict(state)
    for layer in _linears(net):
        prune.l1_unstructured(layer, "weight", amount=0.75)
    train(net, xt, yt, xv, yv, epochs=FINE_TUNE_EPOCHS, lr=FINE_TUNE_LR)
    _write(net, "digits_mlp_w4a4_pruned75", "prune.l1_unstructured(amount=0.75) on every "
           "QuantLinear, masks attached", dense_acc, xt, yt, xv, yv)

    # Structured: half the rows (neurons) of both hidden layers, made permanent.
    net = model()
    net.load_state_dict(state)
    hidden = _linears(net)[:-1]
    for layer in hidden:
        prune.ln_structured(layer, "weight", amount=0.5, n=2, dim=0)
    train(net, xt, yt, xv, yv, epochs=FINE_TUNE_EPOCHS, lr=FINE_TUNE_LR)
    for layer in hidden:
        prune.remove(layer, "weight")
    _write(net, "digits_mlp_w4a4_neurons50", "prune.ln_structured(amount=0.5, n=2, dim=0) on "
           "both hidden QuantLinears, made permanent with prune.remove", dense_acc,
           xt, yt, xv, yv)
    print(f"{time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
