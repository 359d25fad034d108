"""Streamlining: turn an IR chain into integer dataflow layers (``graph -> graph`` passes).

Each ``Linear, FloatOp..., Quant`` group becomes a :class:`~hwgen.compiler.dataflow.MVAU`
with integer thresholds; a final ``Linear, FloatOp...`` group without a quantizer becomes an
MVAU with an integer bias (integer logits). A ``Conv, FloatOp..., Quant`` group becomes a
:class:`~hwgen.compiler.dataflow.SlidingWindow` and an MVAU applied to every window (weights
reordered to the windows' ``(ky, kx, c)`` order); a ``Pad`` on a quantized feature map becomes
a :class:`~hwgen.compiler.dataflow.Pad` carrying the pad value's integer, and a ``MaxPool`` a
sliding window and a :class:`~hwgen.compiler.dataflow.MaxPool`. The first linear layer after a
feature map gets its weight columns reordered from PyTorch's channel-first flatten to the
stream's channels-last pixels: the data is never reordered.

Thresholds are derived by evaluating the model's own arithmetic, never from a closed form: the
float ops of the group (the same torch ops, float32, batch layout ``[N, C]``) and the
quantizer are applied to ``acc * (s_in * s_w)`` for every reachable accumulator value of every
output channel, and ``T[c, k]`` is the smallest accumulator whose output level reaches
``qmin + k + 1``. Where a channel's range exceeds :data:`FULL_LIMIT` values, a binary search per
threshold replaces the scan (monotonicity is then checked on a grid of samples only).
"""

from __future__ import annotations

import numpy as np
import torch

from . import ir
from .dataflow import (
    MVAU,
    Dataflow,
    InputQuant,
    LabelSelect,
    MaxPool,
    Pad,
    SlidingWindow,
    bits_for_range,
    int_range,
)
from .errors import QuantizationError, UnsupportedOpError

__all__ = [
    "FULL_LIMIT",
    "acc_bits",
    "acc_range",
    "chain_levels",
    "derive_thresholds",
    "integer_bias",
    "streamline",
]

#: Largest accumulator range per channel that is scanned value by value.
FULL_LIMIT = 1_000_000
#: Elements evaluated per chunk (rows x channels).
CHUNK = 1 << 20
#: Samples per channel used to check monotonicity when the range is binary-searched.
SAMPLES = 4097


def acc_range(weight: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel, the smallest and largest accumulator reachable with inputs in
    ``[lo, hi]`` and the actual integer weights."""
    weight = np.asarray(weight, dtype=np.int64)
    a, b = weight * lo, weight * hi
    return np.minimum(a, b).sum(axis=1), np.maximum(a, b).sum(axis=1)


def acc_bits(acc_lo: np.ndarray, acc_hi: np.ndarray) -> int:
    """``ceil(log2(M + 1)) + 1`` signed bits, M the largest reachable ``|acc|``."""
    m = max(int(np.abs(acc_lo).max(initial=0)), int(np.abs(acc_hi).max(initial=0)))
    return m.bit_length() + 1


def _chain_input(acc: np.ndarray, scale: float) -> torch.Tensor:
    # Exactly what F.linear computes for dequantized inputs and weights with power-of-two
    # scales: the integer accumulator times s_in * s_w, in float32.
    return torch.from_numpy(np.ascontiguousarray(acc, dtype=np.float32)) * torch.tensor(
        scale, dtype=torch.float32)


def _run_ops(ops, x: torch.Tensor, spatial=None, where: str = "") -> torch.Tensor:
    """The ops on ``x [N, C]``; with ``spatial = (h, w)`` on the feature map ``[N, C, h, w]``
    holding each value at every pixel, as the model runs them (PyTorch's kernels may take
    other paths for other shapes), checking that every pixel gives the same result."""
    with torch.no_grad():
        if spatial:
            x = x[:, :, None, None].expand(-1, -1, *spatial).contiguous()
        for op in ops:
            x = op(x)
        if spatial:
            first = x[:, :, :1, :1]
            if not torch.equal(x, first.expand_as(x)):
                raise QuantizationError(
                    f"{where}: PyTorch's float ops give different results for the same "
                    f"accumulator at different pixels of the {spatial[0]}x{spatial[1]} map, so "
                    f"no per-channel threshold reproduces them; use power-of-two scales and "
                    f"fold the batch norm before export.")
            x = first[:, :, 0, 0]
    return x


def chain_levels(ops, quant: ir.Quant, scale: float, spatial=None, where: str = ""):
    """The map ``acc [N, C] -> integer level [N, C]`` of a group: the model's float ops and its
    quantizer applied to ``acc * scale`` (on a feature map of ``spatial = (h, w)`` pixels for a
    convolution). A binarizer's level is its bit (1 for +1, 0 for -1)."""
    q_scale = torch.tensor(quant.scale, dtype=torch.float32)
    zero = torch.tensor(0.0, dtype=torch.float32)
    threshold = torch.tensor(quant.threshold, dtype=torch.float32)

    def levels(acc: np.ndarray) -> np.ndarray:
        y = _run_ops(ops, _chain_input(acc, scale), spatial, where)
        if quant.thresholds is not None:
            # MultiThreshold: compared in the thresholds' own type, as qonnx's executor does.
            t = np.asarray(quant.thresholds)
            y = y.numpy().astype(np.result_type(np.float32, t.dtype))
            count = (y[:, :, None] >= t[None]).sum(axis=2)
            return count.astype(np.int64) + (0 if quant.bipolar else quant.range[0])
        with torch.no_grad():
            if quant.bipolar:
                return (torch.ops.hwgen.bipolar(y, q_scale, threshold) > 0).numpy().astype(
                    np.int64)
            y = torch.ops.hwgen.quant(y, q_scale, zero, quant.bits, quant.signed, quant.narrow)
        return np.rint(y.to(torch.float64).numpy() / quant.scale).astype(np.int64)
    return levels


def _points(acc_lo, acc_hi, pixels: int = 1):
    """Chunks ``(acc, valid)`` covering every reachable accumulator of every channel (column),
    or one grid of samples when a range exceeds :data:`FULL_LIMIT`; a chunk's rows times
    channels times ``pixels`` (the map each value is evaluated on) stays near
    :data:`CHUNK`."""
    width = acc_hi - acc_lo + 1
    total = int(width.max())
    rows = max(1, CHUNK // (len(acc_lo) * pixels))
    if total > FULL_LIMIT:
        grid = np.linspace(0.0, 1.0, SAMPLES)[:, None]
        acc = np.rint(acc_lo[None, :] + grid * (acc_hi - acc_lo)[None, :]).astype(np.int64)
        for start in range(0, SAMPLES, rows):
            yield acc[start:start + rows], np.ones(acc[start:start + rows].shape, dtype=bool)
        return
    for start in range(0, total, rows):
        i = np.arange(start, min(start + rows, total), dtype=np.int64)[:, None]
        yield np.minimum(acc_lo[None, :] + i, acc_hi[None, :]), i < width[None, :]


def derive_thresholds(levels, acc_lo, acc_hi, qlo: int, n_thresholds: int, where: str = "",
                      pixels: int = 1):
    """Thresholds ``[C, n_thresholds]`` and per-channel signs (``-1`` where the weight row
    must be negated) reproducing ``levels`` on every reachable accumulator.

    ``levels(acc [N, C]) -> int [N, C]`` is the group's map; ``T[c, k]`` is the smallest
    (sign-adjusted) accumulator whose level is at least ``qlo + k + 1``; levels never reached
    get ``acc_hi + 1`` (never fires)."""
    acc_lo = np.asarray(acc_lo, dtype=np.int64)
    acc_hi = np.asarray(acc_hi, dtype=np.int64)
    channels = len(acc_lo)
    targets = qlo + np.arange(1, n_thresholds + 1, dtype=np.int64)
    full = int((acc_hi - acc_lo + 1).max()) <= FULL_LIMIT
    inc = np.ones(channels, dtype=bool)
    dec = np.ones(channels, dtype=bool)
    n_levels = n_thresholds + 1
    counts = np.zeros(channels * n_levels, dtype=np.int64)
    prev = None
    seen_lo = np.full(channels, np.iinfo(np.int64).max)
    seen_hi = np.full(channels, np.iinfo(np.int64).min)
    for acc, valid in _points(acc_lo, acc_hi, pixels):
        lev = levels(acc)
        seq = lev if prev is None else np.vstack([prev, lev])
        step = np.diff(seq, axis=0)
        inc &= (step >= 0).all(axis=0)
        dec &= (step <= 0).all(axis=0)
        prev = lev[-1:]
        seen_lo = np.minimum(seen_lo, lev.min(axis=0))
        seen_hi = np.maximum(seen_hi, lev.max(axis=0))
        if full:
            if lev.min() < qlo or lev.max() > qlo + n_thresholds:
                raise AssertionError(f"{where}: levels outside the quantizer range")
            idx = (lev - qlo) + np.arange(channels, dtype=np.int64)[None, :] * n_levels
            counts += np.bincount(idx[valid], minlength=channels * n_levels)
    bad = np.flatnonzero(~inc & ~dec)
    if bad.size:
        c = int(bad[0])
        raise QuantizationError(
            f"{where}: the activation of output channel {c} (and {bad.size - 1} others) is not "
            f"monotonic in the accumulator (levels {int(seen_lo[c])}..{int(seen_hi[c])} go up "
            f"and down over accumulators {int(acc_lo[c])}..{int(acc_hi[c])}); hwgen needs a "
            f"monotonic map per channel (batch norm, bias, scaling and ReLU between a linear "
            f"layer and its quantizer are): remove the non-monotonic op.")
    sign = np.where(inc, 1, -1).astype(np.int64)
    lo_s = np.where(sign > 0, acc_lo, -acc_hi)
    hi_s = np.where(sign > 0, acc_hi, -acc_lo)
    if full:
        below = np.cumsum(counts.reshape(channels, n_levels), axis=1)[:, :n_thresholds]
        return lo_s[:, None] + below, sign
    # Binary search per threshold: rows are thresholds, columns channels ([N, C] layout).
    shape = (n_thresholds, channels)
    left = np.broadcast_to(lo_s, shape).copy()
    right = np.broadcast_to(hi_s + 1, shape).copy()
    while (left < right).any():
        active = left < right
        mid = np.minimum((left + right) // 2, hi_s[None, :])
        reach = levels(mid * sign[None, :]) >= targets[:, None]
        right = np.where(active & reach, mid, right)
        left = np.where(active & ~reach, mid + 1, left)
    return left.T.copy(), sign


def integer_bias(ops, scale: float, acc_lo, acc_hi, where: str = ""):
    """The integer bias ``b`` (per channel, or ``None``) with ``ops(acc * scale) == (acc + b) *
    scale`` exactly on every reachable accumulator; :class:`QuantizationError` when the ops
    leave the integer grid."""
    if not ops:
        return None
    bias = None
    for acc, valid in _points(np.asarray(acc_lo), np.asarray(acc_hi)):
        y = _run_ops(ops, _chain_input(acc, scale)).to(torch.float64).numpy()
        b = y / scale - acc
        b = np.where(valid, b, b[:1])
        if bias is None:
            bias = b[0]
        if not (np.all(b == bias[None, :]) and np.all(np.rint(bias) == bias)):
            c = int(np.flatnonzero(~np.all(b == np.rint(bias)[None, :], axis=0))[0])
            raise QuantizationError(
                f"{where}: the float ops after the last linear layer do not keep the logits on "
                f"the integer accumulator grid (scale {scale}): output channel {c} is not the "
                f"accumulator plus an integer bias. Quantize the bias to the accumulator grid "
                f"(hwgen.nn.QuantLinear(..., bias=True, input_scale=<scale of the quantizer "
                f"before it>)) and put no batch norm or scaling after the last linear layer, "
                f"or end the model with a quantizer.")
    bias = np.rint(bias).astype(np.int64)
    return bias if bias.any() else None


def _fit_weights(weights: np.ndarray, bits: int, signed: bool) -> tuple[int, bool]:
    lo, hi = int_range(bits, signed)
    if weights.size and (weights.min() < lo or weights.max() > hi):
        return bits_for_range(min(int(weights.min()), lo), max(int(weights.max()), hi))
    return bits, signed


def streamline(graph: ir.Graph, output: str = "logits") -> Dataflow:
    """Turn an IR chain into a :class:`Dataflow` of MVAUs (``pe = simd = 1``), with
    sliding windows, pads and max-pools for feature maps; with ``output="label"`` a
    :class:`LabelSelect` is appended."""
    if output not in ("logits", "label"):
        raise ValueError(f"output={output!r} must be 'logits' or 'label'")
    nodes = list(graph.nodes)
    first = nodes[0]
    if not isinstance(first, ir.Quant):
        raise QuantizationError(f"graph {graph.name}: the input is not quantized first; put a "
                                f"quantizer on the input (hwgen.nn.QuantIdentity or "
                                f"BinaryInput; in QONNX a Quant or BipolarQuant node, e.g. "
                                f"Brevitas' QuantIdentity).")
    if first.thresholds is not None:
        raise QuantizationError(f"graph {graph.name}: the input is quantized by thresholds "
                                f"('{first.name}'); the host quantizes the input with a scale, "
                                f"so quantize it with a Quant node.")
    inp = InputQuant(shape=tuple(graph.input_shape), bits=first.bits, signed=first.signed,
                     narrow=first.narrow, scale=first.scale, zero_point=0.0,
                     bipolar=first.bipolar, threshold=first.threshold)
    meta = dict(graph.meta)
    meta.update(input_node=first.name, layer_scales={}, notes=[])
    layers = []
    counts = {"fc": 0, "conv": 0, "pool": 0, "pad": 0}
    # The stream: its quantizer and shape, (c, h, w) for a feature map, else (n,).
    prev = first
    shape = tuple(graph.input_shape) if len(graph.input_shape) == 3 else (inp.n,)

    def stream(name, source):
        bits = 1 if prev.bipolar else prev.bits
        return {"name": name, "bits": bits, "signed": prev.signed and not prev.bipolar,
                "source": source}

    def need_map(node, what):
        if len(shape) != 3:
            raise UnsupportedOpError(f"{what} node '{node.name}' gets {shape[0]} features, not "
                                     f"a feature map [C, H, W].")

    i = 1
    while i < len(nodes):
        node = nodes[i]
        if isinstance(node, ir.Pad):
            need_map(node, "pad")
            nxt = nodes[i + 1] if i + 1 < len(nodes) else None
            kind = "conv" if isinstance(nxt, ir.Conv) else "pool" \
                if isinstance(nxt, ir.MaxPool) else None
            name = f"{kind}{counts[kind]}_pad" if kind else f"pad{counts['pad']}"
            counts["pad"] += kind is None
            c, h, w = shape
            layer = Pad(h=h, w=w, c=c, pads=node.pads, value=_pad_value(prev, node),
                        **stream(name, node.name))
            layers.append(layer)
            shape = (c, layer.out_h, layer.out_w)
            i += 1
            continue
        if isinstance(node, ir.MaxPool):
            need_map(node, "max-pool")
            c, h, w = shape
            k = counts["pool"]
            counts["pool"] += 1
            window = SlidingWindow(h=h, w=w, c=c, kernel=node.kernel, stride=node.stride,
                                   **stream(f"pool{k}_window", node.name))
            layers += [window, MaxPool(pixels=window.pixels_out, window=window.window, c=c,
                                       **stream(f"pool{k}", node.name))]
            shape = (c, window.out_h, window.out_w)
            i += 1
            continue
        if not isinstance(node, (ir.Linear, ir.Conv)):
            raise UnsupportedOpError(f"node '{node.name}' follows quantizer '{prev.name}' with "
                                     f"no linear or convolution layer between them; hwgen maps "
                                     f"layer + float ops + quantizer groups.")
        ops = []
        j = i + 1
        while j < len(nodes) and isinstance(nodes[j], ir.FloatOp):
            ops.append(nodes[j])
            j += 1
        quant = nodes[j] if j < len(nodes) else None
        if quant is not None and not isinstance(quant, ir.Quant):
            raise UnsupportedOpError(f"node '{quant.name}' comes between layer '{node.name}' "
                                     f"and its activation quantizer; hwgen maps a layer, its "
                                     f"float ops and a quantizer as one group: put pads and "
                                     f"max-pools after the quantizer (on its integers).")
        if isinstance(node, ir.Conv):
            need_map(node, "convolution")
            c, h, w = shape
            if node.in_channels != c:
                raise UnsupportedOpError(f"convolution node '{node.name}' takes "
                                         f"{node.in_channels} channels but gets {c}.")
            if quant is None:
                raise UnsupportedOpError(f"convolution node '{node.name}' is not followed by "
                                         f"a quantizer; hwgen needs the model to end with a "
                                         f"linear layer (flatten the feature map first).")
            k = counts["conv"]
            counts["conv"] += 1
            window = SlidingWindow(h=h, w=w, c=c, kernel=node.kernel, stride=node.stride,
                                   **stream(f"conv{k}_window", node.name))
            # Window elements come in (ky, kx, c) order.
            weights = node.weight.transpose(0, 2, 3, 1).reshape(node.out_channels, -1)
            layer, scale = _mvau(f"conv{k}", prev, node, weights, ops, quant, graph.output,
                                 meta, (window.out_h, window.out_w))
            layers += [window, layer]
            shape = (node.out_channels, window.out_h, window.out_w)
        else:
            weights = node.weight
            n = int(np.prod(shape))
            if node.in_features != n:
                raise UnsupportedOpError(f"linear node '{node.name}' takes {node.in_features} "
                                         f"features but gets {n}.")
            if len(shape) == 3:
                # PyTorch flattens [c, h, w] channel-first; the stream is channels-last.
                c, h, w = shape
                weights = weights.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(
                    len(weights), -1)
            layer, scale = _mvau(f"fc{counts['fc']}", prev, node, weights, ops, quant,
                                 graph.output, meta)
            counts["fc"] += 1
            layers.append(layer)
            shape = (layer.mh,)
        meta["layer_scales"][layer.name] = scale
        meta["logit_scale"] = scale
        if quant is None:
            break
        prev = quant
        i = j + 1
    if len(shape) != 1 or not isinstance(layers[-1], MVAU):
        raise UnsupportedOpError(f"graph {graph.name}: the model ends with a feature map; "
                                 f"hwgen needs a last linear layer (integer logits).")
    if output == "label":
        last = layers[-1]
        layers.append(LabelSelect(name="label", n=last.mh, in_bits=last.out_bits,
                                  in_signed=last.out_signed, source=last.source))
    return Dataflow(name=graph.name, input=inp, layers=layers, meta=meta)


def _pad_value(prev: ir.Quant, pad: ir.Pad) -> int:
    """The integer a pad carries on the stream of quantizer ``prev``: ``value / scale``, the
    lowest level for a max-pool's ``-inf``, a bit (1 for +1) on a binary stream."""
    lo, hi = (0, 1) if prev.bipolar else prev.range
    if pad.value == float("-inf"):
        return lo
    q = pad.value / prev.scale
    if prev.bipolar:
        if abs(q) != 1:
            raise QuantizationError(
                f"pad node '{pad.name}' pads the binary output of '{prev.name}' with "
                f"{pad.value}, but a binary stream carries only +1 and -1 (times the scale "
                f"{prev.scale}), one bit per element: pad with {prev.scale} or {-prev.scale} "
                f"before the convolution (F.pad(x, ..., value=...), as "
                f"hwgen.nn.BinaryConv2d(..., pad_value=...) does); zero padding cannot be "
                f"carried.")
        return int(q > 0)
    if q != int(q) or not lo <= q <= hi:
        raise QuantizationError(
            f"pad node '{pad.name}' pads the output of quantizer '{prev.name}' with {pad.value}, "
            f"which is not one of its levels (integers {lo}..{hi} times {prev.scale}); pad with "
            f"0 or another level.")
    return int(q)


def _mvau(name, prev: ir.Quant, lin, weights, ops, quant, output, meta, spatial=None):
    """The MVAU of a ``lin, ops..., quant`` group (``lin`` an :class:`ir.Linear`, or an
    :class:`ir.Conv` applied to ``spatial = (out_h, out_w)`` windows), ``weights`` its
    ``[out, in]`` integer matrix in stream order, and the scale of its outputs."""
    xlo, xhi = prev.range
    pixels = spatial[0] * spatial[1] if spatial else 1
    # One number, or one per output channel (per-channel weight scales).
    scale = prev.scale * (lin.weight_scale if np.isscalar(lin.weight_scale) else
                          np.asarray(lin.weight_scale, dtype=np.float64))
    acc_lo, acc_hi = acc_range(weights, xlo, xhi)
    bits = acc_bits(acc_lo, acc_hi)
    if bits - 1 > 24:
        meta["notes"].append(f"{name}: accumulators exceed 2**24, so the float32 model is not "
                             f"exact; PyTorch and the integer model may differ")
    if quant is None and not np.isscalar(scale):
        raise QuantizationError(
            f"layer {name}: '{lin.name}' has one weight scale per output channel, so its "
            f"integer logits are on different grids and neither they nor their argmax stand "
            f"for the model's; quantize the last layer's weights per tensor (Brevitas: "
            f"Int8WeightPerTensorFixedPoint).")
    for s, what in ((prev.scale, prev.name), (lin.weight_scale, lin.name)):
        if np.all(np.frexp(s)[0] == 0.5):
            continue
        s = s if np.isscalar(s) else np.asarray(s)[np.frexp(s)[0] != 0.5][0]
        if quant is None:
            # Logits are acc * s_in * s_w; only power-of-two scales keep the source model's
            # float logits on that integer grid.
            raise QuantizationError(
                f"layer {name}: scale {s} of '{what}' is not a power of two, so the model's "
                f"float logits are not integer multiples of a step and no integer logit "
                f"reproduces them; quantize the last layer's input and weights with "
                f"power-of-two scales (Brevitas: Int8ActPerTensorFixedPoint / "
                f"Int8WeightPerTensorFixedPoint; hwgen.nn always does).")
        meta["notes"].append(f"{name}: scale {s} of '{what}' is not a power of two; the "
                             f"source model's float arithmetic may round differently from "
                             f"the integers (the reference check counts any such tie)")
    chain = " -> ".join([lin.name, *(op.name for op in ops), quant.name if quant else output])
    where = f"layer {name} (nodes {chain})"
    common = {"name": name, "in_bits": prev.bits, "in_signed": prev.signed, "acc_bits": bits,
              "in_bipolar": prev.bipolar, "weight_bipolar": lin.weight_bipolar,
              "pixels": pixels}
    if quant is None:
        bias = integer_bias(ops, scale, acc_lo, acc_hi, where)
        b = 0 if bias is None else bias
        out_bits, out_signed = bits_for_range(min(int((acc_lo + b).min()), 0),
                                              max(int((acc_hi + b).max()), 0))
        layer = MVAU(weights=weights, weight_bits=lin.weight_bits,
                     weight_signed=lin.weight_signed, out_bits=out_bits, out_signed=out_signed,
                     bias=bias, source=output, **common)
        return layer, scale
    # A binarizer's levels are its bits: 0 (for -1) and 1.
    qlo = 0 if quant.bipolar else quant.range[0]
    n_thresholds = 2**quant.bits - 1
    levels = chain_levels(ops, quant, scale, spatial, where)
    thresholds, sign = derive_thresholds(levels, acc_lo, acc_hi, qlo, n_thresholds, where,
                                         pixels)
    weights = weights * sign[:, None]
    wbits, wsigned = lin.weight_bits, lin.weight_signed
    if not lin.weight_bipolar:  # -1/+1 weights stay -1/+1 when negated
        wbits, wsigned = _fit_weights(weights, wbits, wsigned)
    if (wbits, wsigned) != (lin.weight_bits, lin.weight_signed):
        meta["notes"].append(f"{name}: negated weight rows need {wbits}-bit weights")
    layer = MVAU(weights=weights, weight_bits=wbits, weight_signed=wsigned,
                 out_bits=quant.bits, out_signed=quant.signed and not quant.bipolar,
                 thresholds=thresholds, out_base=qlo, source=quant.name,
                 out_bipolar=quant.bipolar, **common)
    return layer, quant.scale
