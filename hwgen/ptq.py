"""Post-training quantization: a float ``torch.export`` MLP becomes an :mod:`hwgen.nn` model.

``hwgen build model.pt2 --bits w4a4 --calibrate X.npy`` runs :func:`quantize` first and builds
what it returns, so everything after (compiler, golden model, hardware, the PyTorch
comparison) is the path of a model trained with :mod:`hwgen.nn`:

* the float program is read as a chain of ``linear`` (with an optional ``batch_norm`` in eval
  mode after it, folded into the weights and bias), ``relu`` and flattens;
* weights get ``w`` bits, narrow signed, with the per-tensor power-of-two scale of
  :class:`hwgen.nn.QuantLinear`; hidden biases stay float (they become thresholds), the last
  layer's bias goes to the accumulator grid;
* the input gets ``a`` bits (unsigned when the calibration inputs are never negative) and each
  ReLU becomes a :class:`hwgen.nn.QuantReLU` of ``a`` bits; their power-of-two scales are
  chosen on the calibration inputs, each the one with the least squared error among those
  from "the largest value fits" down to 1/8 of it (clipping a few outliers usually beats
  coarse steps).
"""

from __future__ import annotations

import itertools
import math
import operator
import re

import numpy as np
import torch
from torch import nn

from hwgen.compiler.errors import ModelFileError, UnsupportedOpError
from hwgen.nn import QuantIdentity, QuantLinear, QuantReLU, int_range

__all__ = ["parse_bits", "quantize"]

_aten = torch.ops.aten
_LINEAR = {_aten.linear.default}
_RELU = {_aten.relu.default}
#: Batch norm ops, with the position of ``eps`` among their arguments.
_BATCH_NORM = {_aten._native_batch_norm_legit_no_training.default: 6,
               _aten.batch_norm.default: 7}
_FLATTEN = {_aten.flatten.using_ints, _aten.view.default, _aten.reshape.default}
_SAME = {_aten.clone.default, _aten.dropout.default, _aten.alias.default}


def parse_bits(text: str) -> tuple[int, int]:
    """``"w4a4"`` -> ``(4, 4)``: weight bits, activation bits."""
    found = re.fullmatch(r"w(\d+)a(\d+)", text.strip().lower())
    if not found or not (2 <= int(found[1]) <= 8 and 1 <= int(found[2]) <= 8):
        raise ModelFileError(f"--bits {text!r} must look like w4a4: weight bits 2..8, "
                             f"activation bits 1..8")
    return int(found[1]), int(found[2])


def _float_layers(ep: torch.export.ExportedProgram) -> list:
    """The program as ``[("linear", W, b) | ("bn", scale, shift) | ("relu",) | ("flatten",)]``,
    in order, for a chain of supported ops."""
    sig = ep.graph_signature
    params = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}
    state = {**ep.state_dict, **getattr(ep, "constants", {})}

    def const(node, what):
        if node is None:
            return None
        if getattr(node, "op", None) != "placeholder" or node.name not in params:
            raise UnsupportedOpError(f"node '{current.name}' ({current.target}): its {what} is "
                                     f"computed, not a parameter; post-training quantization "
                                     f"reads a plain float model (export it in eval mode)")
        return state[params[node.name]].detach().to(torch.float64).numpy()

    layers, running = [], None
    for current in ep.graph.nodes:
        if current.op == "placeholder":
            if current.name not in params and running is None:
                running = current
            continue
        if current.op == "output":
            break
        if current.op != "call_function":
            continue
        args = current.args
        target = current.target
        if target is operator.getitem:
            if args[0] is running and args[1] == 0:
                running = current
            continue
        if not args or args[0] is not running:
            raise UnsupportedOpError(
                f"node '{current.name}' ({target}) does not continue the chain of layers; "
                f"post-training quantization takes a sequential float MLP (linear, batch "
                f"norm, ReLU, flatten)")
        if target in _LINEAR:
            layers.append(("linear", const(args[1], "weight"),
                           const(args[2] if len(args) > 2 else None, "bias")))
        elif target in _BATCH_NORM:
            if target == _aten.batch_norm.default and args[5]:
                raise UnsupportedOpError(f"node '{current.name}': batch norm in training mode; "
                                         f"export the model after model.eval()")
            weight, bias, mean, var = (const(a, "batch norm statistics") for a in args[1:5])
            scale = (weight if weight is not None else 1.0) / np.sqrt(var + args[
                _BATCH_NORM[target]])
            layers.append(("bn", scale, (bias if bias is not None else 0.0) - mean * scale))
        elif target in _RELU:
            layers.append(("relu",))
        elif target in _FLATTEN or target in _SAME:
            if target in _FLATTEN:
                layers.append(("flatten",))
        else:
            raise UnsupportedOpError(
                f"node '{current.name}': op {target} is not supported by post-training "
                f"quantization; it takes linear, batch norm (eval), ReLU and flatten")
        running = current
    return layers


def _fused(layers) -> list:
    """Batch norm folded into the linear layer before it: ``[Linear | ReLU | Flatten]`` of
    float64 ``(W, b)``."""
    out = []
    for layer in layers:
        if layer[0] == "bn":
            if not out or out[-1][0] != "linear":
                raise UnsupportedOpError("a batch norm that does not follow a linear layer "
                                         "cannot be folded; post-training quantization needs "
                                         "linear -> batch norm")
            _, w, b = out[-1]
            scale, shift = layer[1], layer[2]
            b = np.zeros(len(w)) if b is None else b
            out[-1] = ("linear", w * scale[:, None], b * scale + shift)
        elif layer[0] == "flatten" and any(entry[0] == "linear" for entry in out):
            raise UnsupportedOpError("a flatten after the first linear layer is not supported")
        else:
            out.append(layer)
    if not any(entry[0] == "linear" for entry in out):
        raise UnsupportedOpError("the model has no linear layer")
    if out[-1][0] != "linear":
        raise UnsupportedOpError("the model must end with a linear layer (its logits)")
    return out


def _scale(values: np.ndarray, bits: int, signed: bool) -> float:
    """The power-of-two step with the least squared quantization error on ``values``, among
    the one where the largest magnitude fits and three finer ones."""
    lo, hi = int_range(bits, signed)
    top = float(np.abs(values).max()) or 1.0
    start = math.ceil(math.log2(top / hi))
    best = None
    for exponent in range(start, start - 4, -1):
        step = 2.0 ** exponent
        error = float(np.square(np.clip(np.round(values / step), lo, hi) * step - values).mean())
        if best is None or error < best[0]:
            best = (error, step)
    return best[1]


def quantize(ep: torch.export.ExportedProgram, calibration: np.ndarray, weight_bits: int,
             act_bits: int) -> tuple[nn.Module, dict]:
    """An :mod:`hwgen.nn` model equivalent to the float ``ep`` at ``weight_bits`` weights
    and ``act_bits`` activations, its input and ReLU scales calibrated on ``calibration``
    (float inputs as the model takes them). Returns the model (eval mode) and what was chosen:
    ``{"input": {...}, "activations": [scale, ...], "weight_bits", "act_bits"}``."""
    layers = _fused(_float_layers(ep))
    if any(a[0] == "linear" and b[0] != "relu" for a, b in itertools.pairwise(layers)) \
            or sum(layer[0] == "relu" for layer in layers) \
            != sum(layer[0] == "linear" for layer in layers) - 1:
        raise UnsupportedOpError("post-training quantization takes linear layers each followed "
                                 "by a ReLU (a batch norm may come between), the last one "
                                 "excepted")
    x = np.asarray(calibration, dtype=np.float64)
    if x.ndim < 2 or not len(x):
        raise ModelFileError(f"--calibrate needs an array of input vectors [N, ...], got shape "
                             f"{x.shape}")
    x = x.reshape(len(x), -1)
    signed = bool((x < 0).any())
    in_scale = _scale(x, act_bits, signed)
    modules = [nn.Flatten()] if layers[0][0] == "flatten" else []
    modules.append(QuantIdentity(bits=act_bits, signed=signed, scale=in_scale))
    lo, hi = int_range(act_bits, signed)
    h = np.clip(np.round(x / in_scale), lo, hi) * in_scale
    scale, chosen = in_scale, []
    linears = [layer for layer in layers if layer[0] == "linear"]
    for i, (_, w, b) in enumerate(linears):
        last = i == len(linears) - 1
        q = QuantLinear(w.shape[1], w.shape[0], bias=last or b is not None,
                        weight_bits=weight_bits, input_scale=scale if last else None)
        with torch.no_grad():
            q.weight.copy_(torch.from_numpy(w))
            if q.bias is not None:
                q.bias.copy_(torch.from_numpy(np.zeros(len(w)) if b is None else b))
        modules.append(q)
        if last:
            break
        # Calibrate the next activation on what the quantized layers so far compute.
        with torch.no_grad():
            y = q(torch.from_numpy(h).to(torch.float32)).to(torch.float64).numpy()
        y = np.maximum(y, 0)
        scale = _scale(y, act_bits, False)
        chosen.append(scale)
        modules.append(QuantReLU(bits=act_bits, scale=scale))
        h = np.clip(np.round(y / scale), 0, 2**act_bits - 1) * scale
    model = nn.Sequential(*modules).eval()
    info = {"weight_bits": weight_bits, "act_bits": act_bits,
            "input": {"bits": act_bits, "signed": signed, "scale": in_scale},
            "activations": chosen}
    return model, info
