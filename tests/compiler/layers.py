"""Random layers for the folding, memory-plan and pruning tests."""

import itertools

import numpy as np

from hwgen.compiler.dataflow import MVAU, Dataflow, InputQuant

UP5K = {"lut": 5280, "ff": 5280, "bram": 30, "dsp": 8, "spram": 4}
ECP5_85F = {"lut": 83640, "ff": 83640, "bram": 208, "dsp": 156, "spram": 0}


def mvau(name, mh, mw, rng, thresholds=True, **kw):
    """A 4-bit MVAU with random weights, and thresholds (or a bias: integer logits)."""
    w = rng.integers(-7, 8, (mh, mw))
    acc = 15 * np.abs(w).sum(axis=1).max()
    if thresholds:
        return MVAU(name, w, 4, False, 4, True, int(acc).bit_length() + 1, 4, False,
                    thresholds=np.sort(rng.integers(-acc, acc, (mh, 15)), axis=1), **kw)
    return MVAU(name, w, 4, False, 4, True, int(acc).bit_length() + 1,
                int(acc).bit_length() + 2, True, bias=rng.integers(-5, 5, mh), **kw)


def mlp(rng, sizes=(64, 64, 64, 10)):
    """The digits MLP's shape: 64 4-bit inputs."""
    layers = [mvau(f"fc{i}", o, n, rng, thresholds=i < len(sizes) - 2)
              for i, (n, o) in enumerate(itertools.pairwise(sizes))]
    return Dataflow("mlp", InputQuant((sizes[0],), 4, False, False, 1.0), layers)


def sparse_mlp(rng, density=0.25):
    """:func:`mlp` with about ``density`` of the weights left nonzero."""
    graph = mlp(rng)
    for layer in graph.layers:
        layer.weights = layer.weights * (rng.random(layer.weights.shape) < density)
    return graph


def binary_mlp(rng, sizes=(784, 64, 64, 64, 10)):
    """TFC's shape: binary weights and activations."""
    layers = []
    for i, (n, o) in enumerate(itertools.pairwise(sizes)):
        last = i == len(sizes) - 2
        layers.append(MVAU(f"fc{i}", rng.choice([-1, 1], (o, n)), 1, False, 1, True,
                           n.bit_length() + 1, n.bit_length() + 1 if last else 1, last,
                           thresholds=None if last else np.zeros((o, 1)),
                           in_bipolar=True, weight_bipolar=True, out_bipolar=not last))
    return Dataflow("tfc", InputQuant((sizes[0],), 1, False, False, 1.0, bipolar=True,
                                      threshold=128.0), layers)
