"""Structured pruning: hidden neurons that cannot change an output leave the graph
(``Dataflow -> Dataflow``).

A hidden neuron whose weight row is all zero accumulates 0 on every input, so its output is
the constant ``c`` its activation gives 0. The next layer adds ``w * c`` (``w`` its weight
column) to every accumulator; :func:`remove_dead_neurons` moves that term into the next
layer's thresholds (``acc + w*c >= T`` is ``acc >= T - w*c``) or bias, and drops the neuron
from both layers. A hidden neuron whose output the next layer never uses (an all-zero weight
column) is dropped the same way. The integer outputs stay exactly those of the unpruned graph.

Each shrunk layer records which of its source node's neurons it computes
(:attr:`~hwgen.compiler.dataflow.MVAU.neurons`), and ``graph.meta["removed_neurons"]`` maps
every removed one to its constant output (None for an unused one, whose output varies), so the
comparison with PyTorch checks the constants too.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from .dataflow import MVAU, Dataflow, int_range
from .streamline import acc_bits, acc_range

__all__ = ["remove_dead_neurons", "sparsity_report"]


def _input_range(layer: MVAU) -> tuple[int, int]:
    return (-1, 1) if layer.in_bipolar else int_range(layer.in_bits, layer.in_signed)


def _output_at_zero(layer: MVAU) -> np.ndarray:
    """Each neuron's output (stream value) when its accumulator is 0."""
    if layer.thresholds is None:
        return np.zeros(layer.mh, np.int64) if layer.bias is None else layer.bias.copy()
    return (layer.thresholds <= 0).sum(axis=1) + layer.out_base


def _shrink(producer: MVAU, consumer: MVAU, drop: np.ndarray, removed: dict):
    """Drop ``producer``'s neurons ``drop`` (a mask), folding their constant outputs into
    ``consumer``; return the new pair."""
    keep = ~drop
    const = _output_at_zero(producer)
    value = 2 * const - 1 if consumer.in_bipolar else const  # what the consumer multiplies
    offset = consumer.weights[:, drop] @ value[drop]
    neurons = np.arange(producer.mh) if producer.neurons is None else \
        np.asarray(producer.neurons)
    # A dead neuron's constant, checked against PyTorch later; an unused one's output varies.
    dead = ~producer.weights.any(axis=1)
    gone = removed.setdefault(producer.name, {})
    for index, c, is_dead in zip(neurons[drop], const[drop], dead[drop], strict=True):
        gone[int(index)] = int(c) if is_dead else None

    weights = producer.weights[keep]
    lo, hi = _input_range(producer)
    producer = dataclasses.replace(
        producer, weights=weights, neurons=neurons[keep].tolist(),
        thresholds=None if producer.thresholds is None else producer.thresholds[keep],
        bias=None if producer.bias is None else producer.bias[keep],
        acc_bits=acc_bits(*acc_range(weights, lo, hi)))

    weights = consumer.weights[:, keep]
    lo, hi = _input_range(consumer)
    changes = {"weights": weights, "acc_bits": acc_bits(*acc_range(weights, lo, hi))}
    if consumer.thresholds is not None:
        changes["thresholds"] = consumer.thresholds - offset[:, None]
    elif offset.any():
        changes["bias"] = offset if consumer.bias is None else consumer.bias + offset
    return producer, dataclasses.replace(consumer, **changes)


def remove_dead_neurons(graph: Dataflow) -> Dataflow:
    """Remove every hidden neuron with an all-zero weight row (a constant output, folded into
    the next layer) or an all-zero weight column in the next layer (an unused output), until
    none is left. One neuron of a layer stays if all of them could go, so every stream
    carries something. Runs before folding, on consecutive MVAUs."""
    graph = copy.deepcopy(graph)
    removed = graph.meta.setdefault("removed_neurons", {})
    layers = graph.layers
    changed = True
    while changed:
        changed = False
        for i in range(len(layers) - 1):
            producer, consumer = layers[i], layers[i + 1]
            if not (isinstance(producer, MVAU) and isinstance(consumer, MVAU)):
                continue
            drop = ~producer.weights.any(axis=1) | ~consumer.weights.any(axis=0)
            if drop.all():
                drop[0] = False
            if drop.any():
                layers[i], layers[i + 1] = _shrink(producer, consumer, drop, removed)
                changed = True
    return graph


def sparsity_report(graph: Dataflow) -> list[dict | None]:
    """Per layer (None for all but MVAUs): the source layer's shape, the neurons and weights
    structured pruning removed, the weights' density (nonzero fraction, counting every weight
    of the source layer, so zeros that quantization rounded count too), and how the hardware
    treats the zeros that are left."""
    removed = graph.meta.get("removed_neurons", {})
    entries, source_in = [], graph.input.n
    for layer in graph.layers:
        if not isinstance(layer, MVAU):
            entries.append(None)
            continue
        source_out = layer.mh + len(removed.get(layer.name, {}))
        weights = source_out * source_in
        nonzero = int(np.count_nonzero(layer.weights))
        entries.append({
            "source_shape": [source_out, source_in],
            "neurons_removed": source_out - layer.mh,
            "inputs_removed": source_in - layer.mw,
            "weights_removed": weights - layer.weights.size,
            "weight_bits_removed": (weights - layer.weights.size) * layer.weight_bits,
            "density": round(nonzero / weights, 4) if weights else 0.0,
            "zeros_left": int(layer.weights.size - nonzero),
            "scheme": "structured" if source_out > layer.mh or source_in > layer.mw
            else "dense",
        })
        source_in = source_out
    return entries
