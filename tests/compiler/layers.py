"""Random 4-bit layers for the folding and memory-plan tests."""

import itertools

import numpy as np

from hwgen.compiler.dataflow import MVAU, Dataflow, InputQuant

UP5K = {"lut": 5280, "ff": 5280, "bram": 30, "dsp": 8, "spram": 4}


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
