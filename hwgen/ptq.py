"""Post-training quantization: a float ``torch.export`` MLP or CNN becomes an :mod:`hwgen.nn`
model.

``hwgen build model.pt2 --bits w4a4 --calibrate X.npy`` runs :func:`quantize` first and builds
what it returns, so everything after (compiler, golden model, hardware, the PyTorch
comparison) is the path of a model trained with :mod:`hwgen.nn`:

* the float program is read as a chain of ``linear`` and ``conv2d`` layers (each with an
  optional ``batch_norm`` in eval mode after it, folded into the weights and bias), ``relu``,
  ``max_pool2d`` and flattens;
* weights get ``w`` bits, narrow signed, with the per-tensor power-of-two scale of
  :class:`hwgen.nn.QuantLinear` and :class:`hwgen.nn.QuantConv2d`; hidden biases stay float
  (they become thresholds), the last layer's bias goes to the accumulator grid;
* the input gets ``a`` bits (unsigned when the calibration inputs are never negative) and each
  ReLU becomes a :class:`hwgen.nn.QuantReLU` of ``a`` bits; their power-of-two scales are
  chosen on the calibration inputs, each the one with the least squared error among those
  from "the largest value fits" down to 1/8 of it (clipping a few outliers usually beats
  coarse steps).
"""

from __future__ import annotations

import math
import operator
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hwgen.compiler.errors import ModelFileError, UnsupportedOpError
from hwgen.compiler.frontend_torch import (
    BATCH_NORM,
    BATCH_NORM_EVAL,
    BIPOLAR,
    CONV,
    IDENTITY,
    LINEAR,
    MAX_POOL,
    QUANT,
    RESHAPE,
    _conv_geometry,
    _max_pool,
    _ops,
    _shape,
    _where,
)
from hwgen.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU, int_range

__all__ = ["export", "input_shape", "parse_bits", "quantize", "run_float"]

RELU = _ops("relu.default", "relu_.default")
#: Where ``eps`` sits among a batch norm op's arguments (after ``momentum``).
_EPS = {**dict.fromkeys(BATCH_NORM, 7), **dict.fromkeys(BATCH_NORM_EVAL, 6)}
#: Candidate steps: the one where the largest value fits, and this many finer ones.
FINER_STEPS = 3


def parse_bits(text: str) -> tuple[int, int]:
    """``"w4a4"`` -> ``(4, 4)``: weight bits, activation bits."""
    found = re.fullmatch(r"w(\d+)a(\d+)", str(text).strip().lower())
    if not found or not (2 <= int(found[1]) <= 8 and 2 <= int(found[2]) <= 8):
        raise ModelFileError(f"--bits {text!r} must look like w4a4: weight and activation bits "
                             f"from 2 to 8")
    return int(found[1]), int(found[2])


def _user_input(ep: torch.export.ExportedProgram):
    return next(n for n in ep.graph.nodes
                if n.op == "placeholder" and n.name in ep.graph_signature.user_inputs)


def input_shape(ep: torch.export.ExportedProgram) -> tuple:
    """The program's input shape: the batch (an int when it was exported static, else None),
    then one vector's dimensions."""
    shape = _user_input(ep).meta["val"].shape
    return (int(shape[0]) if isinstance(shape[0], int) else None,
            *(int(d) for d in shape[1:]))


def run_float(ep: torch.export.ExportedProgram, x: np.ndarray) -> np.ndarray:
    """The program's outputs on float inputs ``x`` (``[N, ...]``, any layout with the right
    number of elements per vector), in batches of its size if it was exported with a static
    one."""
    batch, *shape = input_shape(ep)
    xt = torch.from_numpy(np.asarray(x, np.float32).reshape(len(x), *shape))
    module, size = ep.module(), batch or len(xt)
    parts = []
    with torch.no_grad():
        for start in range(0, len(xt), size):
            chunk = xt[start:start + size]
            pad = size - len(chunk)
            if pad:  # a static batch: fill it with copies of the first vector
                chunk = torch.cat([chunk, chunk[:1].expand(pad, *chunk.shape[1:])])
            parts.append(module(chunk)[:size - pad].to(torch.float64))
    return torch.cat(parts).numpy()


def _float_layers(ep: torch.export.ExportedProgram) -> list:
    """The program as ``[("linear", W, b) | ("conv", W, b, stride, pads) | ("bn", scale,
    shift) | ("relu",) | ("pool", kernel, stride, pads) | ("flatten",)]``, in order, for a
    chain of supported ops."""
    sig = ep.graph_signature
    params = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}
    state = {**ep.state_dict, **getattr(ep, "constants", {})}

    def const(node, arg, what):
        if arg is None:
            return None
        if getattr(arg, "op", None) != "placeholder" or arg.name not in params:
            raise UnsupportedOpError(f"node '{node.name}'{_where(node)}: its {what} is "
                                     f"computed, not a parameter; post-training quantization "
                                     f"reads a plain float model exported in eval mode")
        return state[params[arg.name]].detach().to(torch.float64).numpy()

    def chain_error(node, why):
        return UnsupportedOpError(
            f"node '{node.name}' ({node.target}){_where(node)} {why}; post-training "
            f"quantization takes a sequential float MLP or CNN: linear and convolution "
            f"layers, each followed by a ReLU (a batch norm may come between) except the last "
            f"(linear) one, max-pools after a ReLU, and flattens")

    layers, running = [], _user_input(ep)
    for node in ep.graph.nodes:
        if node.op == "output":
            outputs = node.args[0]
            if not (isinstance(outputs, (tuple, list)) and len(outputs) == 1
                    and outputs[0] is running):
                raise chain_error(node, "returns something other than the last layer's "
                                        "output")
            break
        if node.op != "call_function":
            continue
        args, target = node.args, node.target
        if target is operator.getitem:  # batch norm returns a tuple
            if args[0] is running and args[1] == 0:
                running = node
            continue
        if not args or args[0] is not running:
            raise chain_error(node, "does not continue the chain of layers")
        if target in LINEAR:
            layers.append(("linear", const(node, args[1], "weight"),
                           const(node, args[2] if len(args) > 2 else None, "bias")))
        elif target in CONV:
            weight = const(node, args[1], "weight")
            stride, pads = _conv_geometry(node, weight.shape[2:])
            if pads[:2] != pads[2:]:
                raise chain_error(node, "pads more after the map than before it")
            layers.append(("conv", weight, const(node, args[2] if len(args) > 2 else None,
                                                  "bias"), stride, pads))
        elif target in MAX_POOL:
            layers.append(("pool", *_max_pool(node)))
        elif target in BATCH_NORM or target in BATCH_NORM_EVAL:
            # (Without running statistics, batch norm normalizes by the batch even in eval.)
            if args[3] is None or args[4] is None:
                raise UnsupportedOpError(f"batch norm node '{node.name}'{_where(node)} keeps "
                                         f"no running statistics (track_running_stats=False), "
                                         f"so it cannot be folded into the linear layer")
            if target in BATCH_NORM and args[5]:
                raise UnsupportedOpError(f"batch norm node '{node.name}'{_where(node)} is in "
                                         f"training mode; call model.eval() before "
                                         f"torch.export.export")
            weight, bias, mean, var = (const(node, a, "batch norm parameters")
                                       for a in args[1:5])
            eps = args[_EPS[target]]
            scale = (1.0 if weight is None else weight) / np.sqrt(var + eps)
            layers.append(("bn", scale, (0.0 if bias is None else bias) - mean * scale))
        elif target in RELU:
            layers.append(("relu",))
        elif target in RESHAPE:
            before, after = _shape(args[0]), _shape(node)
            if before and after and before[0] != after[0]:
                raise chain_error(node, "changes the batch dimension")
            layers.append(("flatten",))
        elif target in IDENTITY:
            if target in _ops("dropout.default") and args[2]:
                raise UnsupportedOpError(f"dropout node '{node.name}'{_where(node)} is in "
                                         f"training mode; call model.eval() before "
                                         f"torch.export.export")
        else:
            raise chain_error(node, "is not supported")
        running = node
    return layers


def _fused(layers) -> list:
    """Batch norm folded into the layer before it (per output channel), flattens kept only
    between a feature map and the first linear layer: ``[("linear", W, b) | ("conv", W, b,
    stride, pads) | ("relu",) | ("pool", ...) | ("flatten",)]`` in float64."""
    out = []
    for layer in layers:
        if layer[0] == "bn":
            if not out or out[-1][0] not in ("linear", "conv"):
                raise UnsupportedOpError("a batch norm that does not directly follow a linear "
                                         "or convolution layer cannot be folded into it")
            kind, w, b, *rest = out[-1]
            scale, shift = layer[1], layer[2]
            b = np.zeros(len(w)) if b is None else b
            w = w * scale.reshape(-1, *[1] * (w.ndim - 1))
            out[-1] = (kind, w, b * scale + shift, *rest)
        elif layer[0] == "flatten":
            if any(entry[0] == "linear" for entry in out):
                raise UnsupportedOpError("a reshape after the first linear layer is not "
                                         "supported; flatten the input first")
            if any(entry[0] == "conv" for entry in out) and out[-1][0] != "flatten":
                out.append(layer)
        else:
            out.append(layer)
    kinds = [layer[0] for layer in out]
    # Layers with their ReLU (and the max-pools after it), then the flatten, then the
    # linear layers; the last one's outputs are the logits.
    text = " ".join(kinds)
    if not re.fullmatch(r"((conv relu( pool)*) )*(flatten )?((linear relu) )*linear", text) \
            or ("conv" in kinds) != ("flatten" in kinds):
        raise UnsupportedOpError(f"the layers are {' -> '.join(kinds) or 'none'}; "
                                 f"post-training quantization takes convolutions (each "
                                 f"followed by a ReLU, then any max-pools; a batch norm may "
                                 f"come before the ReLU), a flatten, then linear layers, each "
                                 f"followed by a ReLU except the last, whose outputs are the "
                                 f"logits")
    return out


def _calibration(x, ep) -> np.ndarray:
    """``x`` checked and reshaped to ``[N, features]`` for the program's input."""
    x = np.asarray(x)
    _, *shape = input_shape(ep)
    n = math.prod(shape)
    if x.dtype.kind not in "biuf":
        raise ModelFileError(f"--calibrate holds {x.dtype} values; it must be a real numeric "
                             f"array of input vectors")
    if x.ndim < 1 or not len(x) or x.size % len(x) or x.size // len(x) != n:
        raise ModelFileError(f"--calibrate has shape {x.shape}, but the model takes vectors of "
                             f"shape {shape} ({n} values): give [N, {', '.join(map(str, shape))}]")
    x = x.reshape(len(x), n).astype(np.float64)
    if not np.isfinite(x).all():
        raise ModelFileError("--calibrate holds NaN or infinite values")
    if not x.any():
        raise ModelFileError("--calibrate holds only zeros: the input scale cannot be chosen; "
                             "give real input vectors")
    return x


def _scale(values: np.ndarray, bits: int, signed: bool) -> float:
    """The power-of-two step with the least squared quantization error on ``values``, among
    the one where the largest magnitude fits and ``FINER_STEPS`` finer ones."""
    lo, hi = int_range(bits, signed)
    top = float(np.abs(values).max()) or 1.0  # a ReLU that never fires: any step will do
    start = math.ceil(math.log2(top / hi))
    best = None
    for exponent in range(start, start - FINER_STEPS - 1, -1):
        step = 2.0 ** exponent
        error = float(np.square(np.clip(np.round(values / step), lo, hi) * step - values).mean())
        if best is None or error < best[0]:
            best = (error, step)
    return best[1]


def quantize(ep: torch.export.ExportedProgram, calibration: np.ndarray, weight_bits: int,
             act_bits: int) -> tuple[nn.Module, dict]:
    """An :mod:`hwgen.nn` model equivalent to the float ``ep`` at ``weight_bits`` weights
    and ``act_bits`` activations, its input and ReLU scales calibrated on ``calibration``
    (float input vectors). Returns the model (eval mode, taking ``[N, ...]`` like ``ep``) and
    the scales chosen: ``{"input": {"bits", "signed", "scale"}, "activations": [...]}``."""
    if any(node.target in (QUANT, BIPOLAR) for node in ep.graph.nodes):
        raise ModelFileError("the model is already quantized (it has hwgen quantizers); build "
                             "it without --bits and --calibrate")
    layers = _fused(_float_layers(ep))
    x = _calibration(calibration, ep)
    signed = bool((x < 0).any())
    in_scale = _scale(x, act_bits, signed)
    _, *shape = input_shape(ep)
    convolutional = any(layer[0] == "conv" for layer in layers)
    modules = [nn.Flatten()] if len(shape) > 1 and not convolutional else []
    modules.append(QuantIdentity(bits=act_bits, signed=signed, scale=in_scale))
    inputs = torch.from_numpy(x.reshape(len(x), *shape)).to(torch.float32)
    scale, chosen = in_scale, []
    # Ternary weights follow the mean magnitude (hwgen.nn.weight_scale).
    scaling = "mean" if weight_bits == 2 else "max"
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        if layer[0] in ("linear", "conv"):
            w, b = layer[1], layer[2]
            if layer[0] == "conv":
                (ph, pw, _, _), stride = layer[4], layer[3]
                q = QuantConv2d(w.shape[1], w.shape[0], w.shape[2:], stride=stride,
                                padding=(ph, pw), bias=b is not None, weight_bits=weight_bits,
                                scaling=scaling)
            else:
                q = QuantLinear(w.shape[1], w.shape[0], bias=last or b is not None,
                                weight_bits=weight_bits, input_scale=scale if last else None,
                                scaling=scaling)
            with torch.no_grad():
                q.weight.copy_(torch.from_numpy(w))
                if q.bias is not None:
                    q.bias.copy_(torch.from_numpy(np.zeros(len(w)) if b is None else b))
            modules.append(q)
        elif layer[0] == "relu":
            # Calibrated on what the quantized layers so far compute.
            with torch.no_grad():
                y = torch.relu(nn.Sequential(*modules).eval()(inputs)).to(torch.float64)
            scale = _scale(y.numpy(), act_bits, False)
            chosen.append(scale)
            modules.append(QuantReLU(bits=act_bits, scale=scale))
        elif layer[0] == "pool":
            kernel, stride, pads = layer[1:]
            modules.append(nn.MaxPool2d(kernel, stride, padding=pads[:2]))
        else:
            modules.append(nn.Flatten())
    model = nn.Sequential(*modules).eval()
    return model, {"input": {"bits": act_bits, "signed": signed, "scale": in_scale},
                   "activations": chosen}


def export(model: nn.Module, ep: torch.export.ExportedProgram, path: Path) -> Path:
    """Save ``model`` (from :func:`quantize`) with ``torch.export``, for any batch size, taking
    the same input shape as the float ``ep``."""
    _, *shape = input_shape(ep)
    # Two vectors: an example batch of one would make torch specialise the batch dimension.
    example = torch.zeros(2, *shape)
    program = torch.export.export(model, (example,),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    with open(path, "wb") as file:
        torch.export.save(program, file)
    return path
