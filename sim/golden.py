"""The golden model: the integer program each hardware layer must compute, in NumPy.

It executes the compiler's integer tensors (weights, thresholds, biases as the dataflow graph
holds them), never packed memory images or anything derived from the generated hardware, so
that "0 mismatches" against the RTL means something.
"""

from __future__ import annotations

import numpy as np

from hwgen.compiler.dataflow import (
    FIFO,
    MVAU,
    Dataflow,
    InputQuant,
    LabelSelect,
    MaxPool,
    Pad,
    SlidingWindow,
    WidthConverter,
    int_range,
)

__all__ = ["fifo", "input_quant", "label_select", "max_pool", "mvau", "pad", "run", "run_layers",
           "sliding_window", "width_converter"]


def input_quant(quant: InputQuant, x) -> np.ndarray:
    """Host-side input quantization, in float32 exactly as the model's quantizer computes it:
    ``clamp(round_half_even(x / scale + zero_point), lo, hi)``, or for a binarizer the bit
    ``x >= threshold``. Integer input passes through the same arithmetic. The result is in
    stream order (:meth:`~hwgen.compiler.dataflow.InputQuant.to_stream`: images
    channels-last)."""
    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    if quant.bipolar:
        return quant.to_stream((x >= np.float32(quant.threshold)).astype(np.int64))
    y = x / np.float32(quant.scale)
    if quant.zero_point:
        y = y + np.float32(quant.zero_point)
    lo, hi = quant.stream_range
    return quant.to_stream(np.clip(np.rint(y), lo, hi).astype(np.int64))


def accumulate(layer: MVAU, x: np.ndarray) -> np.ndarray:
    """``acc = x @ weights.T`` exactly (binary inputs as -1/+1), checked against the layer's
    accumulator width."""
    x = np.asarray(x, dtype=np.int64)
    if layer.in_bipolar:
        x = 2 * x - 1
    acc = x @ layer.weights.T
    limit = 2 ** (layer.acc_bits - 1)
    if acc.size and (acc.min() < -limit or acc.max() >= limit):
        raise ArithmeticError(f"{layer.name}: accumulator overflows {layer.acc_bits} bits "
                              f"(range seen {acc.min()}..{acc.max()})")
    return acc


def mvau(layer: MVAU, x: np.ndarray) -> np.ndarray:
    # A convolution applies the same layer to each of its windows.
    if layer.pixels > 1:
        x = np.asarray(x).reshape(-1, layer.mw)
        return mvau_vectors(layer, x).reshape(-1, layer.n_out)
    return mvau_vectors(layer, x)


def mvau_vectors(layer: MVAU, x: np.ndarray) -> np.ndarray:
    """The layer on vectors ``[N, mw]``: ``[N, mh]``."""
    acc = accumulate(layer, x)
    if layer.thresholds is None:
        out = acc if layer.bias is None else acc + layer.bias
    else:
        count = (acc[:, :, None] >= layer.thresholds[None, :, :]).sum(axis=-1)
        out = count + layer.out_base
    lo, hi = int_range(layer.out_bits, layer.out_signed)
    if out.size and (out.min() < lo or out.max() > hi):
        raise ArithmeticError(f"{layer.name}: output exceeds {layer.out_bits} bits")
    return out.astype(np.int64)


def pad(layer: Pad, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64).reshape(-1, layer.h, layer.w, layer.c)
    top, left, bottom, right = layer.pads
    out = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)),
                 constant_values=layer.value)
    return out.reshape(len(x), -1)


def windows(layer: SlidingWindow, x: np.ndarray) -> np.ndarray:
    """Every window: ``[N, out_h, out_w, kh, kw, c]``."""
    x = np.asarray(x, dtype=np.int64).reshape(-1, layer.h, layer.w, layer.c)
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    view = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    # view: [N, h-kh+1, w-kw+1, c, kh, kw]
    view = view[:, ::sh, ::sw][:, :layer.out_h, :layer.out_w]
    return view.transpose(0, 1, 2, 4, 5, 3)


def sliding_window(layer: SlidingWindow, x: np.ndarray) -> np.ndarray:
    w = windows(layer, x)
    return w.reshape(len(w), -1)


def max_pool(layer: MaxPool, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64).reshape(-1, layer.pixels, layer.window, layer.c)
    return x.max(axis=2).reshape(len(x), -1)


def label_select(layer: LabelSelect, x: np.ndarray) -> np.ndarray:
    # np.argmax returns the first maximum: the lowest index wins ties.
    return np.argmax(np.asarray(x, dtype=np.int64), axis=1)[:, None]


def width_converter(layer: WidthConverter, x: np.ndarray) -> np.ndarray:
    # Repacking beats changes no value.
    return np.asarray(x, dtype=np.int64)


def fifo(layer: FIFO, x: np.ndarray) -> np.ndarray:
    # Buffering changes no value.
    return np.asarray(x, dtype=np.int64)


SEMANTICS = {
    MVAU: mvau,
    Pad: pad,
    SlidingWindow: sliding_window,
    MaxPool: max_pool,
    LabelSelect: label_select,
    WidthConverter: width_converter,
    FIFO: fifo,
}


def run_layers(graph: Dataflow, x_int: np.ndarray) -> list[np.ndarray]:
    """Every layer's output (``[frames, n_out]`` integers) for quantized inputs ``x_int``."""
    x = np.asarray(x_int, dtype=np.int64).reshape(len(x_int), -1)
    outputs = []
    for layer in graph.layers:
        x = SEMANTICS[type(layer)](layer, x)
        outputs.append(x)
    return outputs


def run(graph: Dataflow, x_int: np.ndarray) -> np.ndarray:
    """The accelerator's output for quantized inputs: ``[frames, n_out]`` integers."""
    return run_layers(graph, x_int)[-1]
