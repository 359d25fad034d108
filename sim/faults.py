"""Self-test of the checker: corrupt the hardware, never the golden model.

:func:`inject` returns a copy of the dataflow graph with one weight bit flipped or one threshold
moved, to be turned into hardware while the golden model keeps executing the original graph.
Verification must then report mismatches; if it does not, the checker proves nothing.

Each fault is chosen, using the golden model's own layer inputs, where it changes the output of
some vectors, so that a checker that works always sees it.
"""

from __future__ import annotations

import copy

import numpy as np

from hwgen.compiler.dataflow import MVAU, Dataflow

__all__ = ["FAULTS", "inject"]

FAULTS = ("weight", "threshold")


def _layer_inputs(graph: Dataflow, x_int: np.ndarray, golden_layers: list) -> list:
    """Each layer's input values (binary inputs as -1/+1)."""
    streams = [np.asarray(x_int, dtype=np.int64).reshape(len(x_int), -1), *golden_layers[:-1]]
    return [2 * x - 1 if getattr(layer, "in_bipolar", False) else x
            for x, layer in zip(streams, graph.layers, strict=True)]


def inject(graph: Dataflow, kind: str, x_int: np.ndarray,
           golden_layers: list[np.ndarray]) -> tuple[Dataflow, str]:
    """A copy of ``graph`` with one fault of ``kind`` (``"weight"`` or ``"threshold"``), and
    a sentence saying where it is."""
    if kind not in FAULTS:
        raise ValueError(f"unknown fault {kind!r}; choose one of {FAULTS}")
    faulty = copy.deepcopy(graph)
    inputs = _layer_inputs(graph, x_int, golden_layers)
    mvaus = [(i, layer) for i, layer in enumerate(faulty.layers) if isinstance(layer, MVAU)]
    if kind == "weight":
        # Flip the sign bit of the weight that meets the most non-zero inputs.
        i, layer = mvaus[-1]
        x = inputs[i]
        j = int(np.argmax((x != 0).sum(axis=0)))
        c = 0
        bit = layer.weight_bits - 1
        word = int(layer.weights[c, j]) & ((1 << layer.weight_bits) - 1)
        word ^= 1 << bit
        if layer.weight_signed and word >> bit:
            word -= 1 << layer.weight_bits
        old = int(layer.weights[c, j])
        if layer.weight_bipolar:  # the stored bit flips: +1 <-> -1
            word = -old
        layer.weights[c, j] = word
        return faulty, (f"layer {layer.name}: weight [{c}, {j}] bit {bit} flipped "
                        f"({old} -> {word})")
    # Move one threshold down onto its neighbour (rows stay sorted): every vector whose
    # accumulator falls between the two now gets a count one higher.
    candidates = [(i, layer) for i, layer in mvaus if layer.thresholds is not None]
    if not candidates:
        raise ValueError("the model has no thresholds to corrupt")
    best = None
    for i, layer in candidates:
        acc = inputs[i].reshape(-1, layer.mw) @ graph.layers[i].weights.T  # every window
        t = layer.thresholds
        lower = np.concatenate([np.full((t.shape[0], 1), np.iinfo(np.int64).min), t[:, :-1]], 1)
        hits = ((acc[:, :, None] >= lower[None]) & (acc[:, :, None] < t[None])).sum(axis=0)
        c, k = np.unravel_index(int(np.argmax(hits)), hits.shape)
        if best is None or hits[c, k] > best[0]:
            best = (int(hits[c, k]), i, int(c), int(k))
    hits, i, c, k = best
    layer = faulty.layers[i]
    old = int(layer.thresholds[c, k])
    new = int(layer.thresholds[c, k - 1]) if k > 0 else int(
        (inputs[i].reshape(-1, layer.mw) @ layer.weights.T)[:, c].min())
    layer.thresholds[c, k] = min(new, old)
    return faulty, (f"layer {layer.name}: threshold [{c}, {k}] moved {old} -> "
                    f"{layer.thresholds[c, k]} ({hits} of {len(x_int) * layer.pixels} "
                    f"{'windows' if layer.pixels > 1 else 'vectors'} affected)")
