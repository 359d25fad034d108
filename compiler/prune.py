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
every removed one to its constant output as the stream carries it (a bit for a binary layer;
None for an unused neuron, whose output varies), so the comparison with PyTorch checks the
constants too. ``graph.meta["source_weights"]`` keeps each layer's shape and nonzero count from
before the pass, for the report.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from .dataflow import MVAU, Dataflow, int_range
from .streamline import acc_bits, acc_range

__all__ = ["remove_dead_neurons", "sort_neurons", "sparsity_report"]


def _input_range(layer: MVAU) -> tuple[int, int]:
    return (-1, 1) if layer.in_bipolar else int_range(layer.in_bits, layer.in_signed)


def _output_at_zero(layer: MVAU) -> np.ndarray:
    """Each neuron's output (stream value) when its accumulator is 0."""
    if layer.thresholds is None:
        return np.zeros(layer.mh, np.int64) if layer.bias is None else layer.bias.copy()
    return (layer.thresholds <= 0).sum(axis=1) + layer.out_base


def _fold(producer: MVAU, consumer: MVAU, dead: np.ndarray, zero: bool = False) -> MVAU:
    """``consumer`` with the constant outputs of ``producer``'s ``dead`` neurons (a mask)
    moved into its thresholds or bias; with ``zero`` their weight columns become 0 (else the
    caller removes them)."""
    const = _output_at_zero(producer)
    value = 2 * const - 1 if consumer.in_bipolar else const  # what the consumer multiplies
    offset = consumer.weights[:, dead] @ value[dead]
    changes = {}
    if zero:
        changes["weights"] = consumer.weights.copy()
        changes["weights"][:, dead] = 0
    if consumer.thresholds is not None:
        changes["thresholds"] = consumer.thresholds - offset[:, None]
    elif offset.any():
        changes["bias"] = offset if consumer.bias is None else consumer.bias + offset
    return dataclasses.replace(consumer, **changes)


def _shrink(producer: MVAU, consumer: MVAU, drop: np.ndarray, removed: dict):
    """Drop ``producer``'s neurons ``drop`` (a mask), folding their constant outputs into
    ``consumer``; return the new pair."""
    keep = ~drop
    const = _output_at_zero(producer)
    neurons = np.arange(producer.mh) if producer.neurons is None else \
        np.asarray(producer.neurons)
    # A dead neuron's constant, checked against PyTorch later; an unused one's output varies.
    dead = ~producer.weights.any(axis=1)
    gone = removed.setdefault(producer.name, {})
    for index, c, is_dead in zip(neurons[drop], const[drop], dead[drop], strict=True):
        gone[int(index)] = int(c) if is_dead else None
    consumer = _fold(producer, consumer, dead & drop)

    weights = producer.weights[keep]
    lo, hi = _input_range(producer)
    producer = dataclasses.replace(
        producer, weights=weights, neurons=neurons[keep].tolist(),
        thresholds=None if producer.thresholds is None else producer.thresholds[keep],
        bias=None if producer.bias is None else producer.bias[keep],
        acc_bits=acc_bits(*acc_range(weights, lo, hi)))

    weights = consumer.weights[:, keep]
    acc_lo, acc_hi = acc_range(weights, *_input_range(consumer))
    changes = {"weights": weights, "acc_bits": acc_bits(acc_lo, acc_hi)}
    if consumer.thresholds is not None:
        # Back into the reachable range (always: acc_lo, never: acc_hi + 1), as streamlining
        # leaves them, so the stored thresholds stay narrow.
        changes["thresholds"] = np.clip(consumer.thresholds, acc_lo[:, None],
                                        acc_hi[:, None] + 1)
    return producer, dataclasses.replace(consumer, **changes)


def _dense_pair(producer, consumer) -> bool:
    """Two dense MVAUs in a row: the producer's neurons are the consumer's inputs one to one
    (a convolution's channels repeat at every pixel, so their pruning is left alone)."""
    return (isinstance(producer, MVAU) and isinstance(consumer, MVAU)
            and producer.pixels == consumer.pixels == 1)


def remove_dead_neurons(graph: Dataflow) -> Dataflow:
    """Remove every hidden neuron with an all-zero weight row (a constant output, folded into
    the next layer) or an all-zero weight column in the next layer (an unused output), until
    none is left. One neuron of a layer stays if all of them could go, so every stream
    carries something (its constant still moves into the next layer, whose neurons may then
    be dead in turn). Runs before folding, on the MVAUs (and LabelSelect) streamlining makes.
    """
    for layer in graph.layers:
        if getattr(layer, "pe", 1) != 1 or getattr(layer, "simd", 1) != 1 \
                or getattr(layer, "lanes", 1) != 1:
            raise ValueError(f"remove_dead_neurons runs before folding; layer "
                             f"{layer.name} is a folded {type(layer).__name__}")
    graph = copy.deepcopy(graph)
    removed = graph.meta.setdefault("removed_neurons", {})
    graph.meta["source_weights"] = {
        layer.name: {"shape": list(layer.weights.shape),
                     "nonzero": int(np.count_nonzero(layer.weights))}
        for layer in graph.layers if isinstance(layer, MVAU)}
    layers = graph.layers
    changed = True
    while changed:
        changed = False
        for i in range(len(layers) - 1):
            producer, consumer = layers[i], layers[i + 1]
            if not _dense_pair(producer, consumer):
                continue
            drop = ~producer.weights.any(axis=1) | ~consumer.weights.any(axis=0)
            if drop.all():  # neuron 0 stays; only a dead one can still be read
                drop[0] = False
                if consumer.weights[:, 0].any() and not consumer.weight_bipolar:
                    first = np.arange(producer.mh) == 0
                    layers[i + 1] = consumer = _fold(producer, consumer, first, zero=True)
                    changed = True
            if drop.any():
                layers[i], layers[i + 1] = _shrink(producer, consumer, drop, removed)
                changed = True
    return graph


def sort_neurons(graph: Dataflow, names) -> Dataflow:
    """Order the neurons of the hidden MVAUs ``names`` by their count of nonzero weights, most
    first (a stable sort), and the next layer's weight columns with them. Exact: only the
    order of a hidden stream changes, and ``neurons`` records it. Gather lanes need it: a
    fold lasts as long as its busiest neuron needs, so neurons of a fold should be alike.
    Runs before folding; the last MVAU keeps its order (it is the output's)."""
    graph = copy.deepcopy(graph)
    layers = graph.layers
    for i in range(len(layers) - 1):
        producer, consumer = layers[i], layers[i + 1]
        if producer.name not in names or not _dense_pair(producer, consumer):
            continue
        if producer.pe != 1 or producer.simd != 1:
            raise ValueError(f"sort_neurons runs before folding; layer {producer.name} is "
                             f"folded")
        order = np.argsort(-np.count_nonzero(producer.weights, axis=1), kind="stable")
        neurons = np.arange(producer.mh) if producer.neurons is None else \
            np.asarray(producer.neurons)
        layers[i] = dataclasses.replace(
            producer, weights=producer.weights[order], neurons=neurons[order].tolist(),
            thresholds=None if producer.thresholds is None else producer.thresholds[order],
            bias=None if producer.bias is None else producer.bias[order])
        layers[i + 1] = dataclasses.replace(consumer, weights=consumer.weights[:, order])
    return graph


def _scheme(layer: MVAU, source_shape) -> str:
    parts = ["structured"] if tuple(source_shape) != layer.weights.shape else []
    parts.append("gather lanes" if layer.gather else "dense")
    return " + ".join(parts)


def sparsity_report(graph: Dataflow) -> list[dict | None]:
    """Per layer (None for all but MVAUs): the source layer's shape, the neurons and weights
    structured pruning removed, the source layer's density (its nonzero weights over all of
    them, counting zeros that quantization rounded), the zeros the hardware still stores, the
    scheme (``structured`` when neurons or inputs left, then ``gather lanes`` or ``dense``
    for the zeros left), and the multiplying slots per frame against a dense layer's with the
    same folding."""
    source = graph.meta.get("source_weights", {})
    entries = []
    for layer in graph.layers:
        if not isinstance(layer, MVAU):
            entries.append(None)
            continue
        info = source.get(layer.name, {"shape": list(layer.weights.shape),
                                       "nonzero": int(np.count_nonzero(layer.weights))})
        (out, inp), weights = info["shape"], info["shape"][0] * info["shape"][1]
        nonzero = int(np.count_nonzero(layer.weights))
        entries.append({
            "source_shape": [out, inp],
            "neurons_removed": out - layer.mh,
            "inputs_removed": inp - layer.mw,
            "weights_removed": weights - layer.weights.size,
            "weight_bits_removed": (weights - layer.weights.size) * layer.weight_bits,
            "density": round(info["nonzero"] / weights, 4) if weights else 0.0,
            "zeros_left": int(layer.weights.size - nonzero),
            "scheme": _scheme(layer, (out, inp)),
            "slots": sum(layer.fold_slots),
            "dense_slots": layer.nf * layer.sf,
        })
    return entries
