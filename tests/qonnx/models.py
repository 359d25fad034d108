"""Brevitas models exported to QONNX for the QONNX front end's tests.

    python tests/qonnx/models.py OUT_DIR     # writes mlp_w4a4.onnx, binary_mlp.onnx, cnn.onnx

Each model is built with a fixed seed, calibrated (a few training-mode passes set the
activation scales, then batch-norm statistics are drawn at random, negative scales included,
so every folding path is taken) and exported with ``brevitas.export.export_qonnx``. Scales are
powers of two (Brevitas' ``*FixedPoint`` quantizers, constant 1.0 for binary ones), as FINN's
examples use and as integer logits need. ``float_default`` is the same MLP with Brevitas'
default float scales on its hidden layer, ``per_channel`` a CNN with per-channel weight scales,
and ``per_channel_logits`` an MLP that has them on its last layer (refused).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

with warnings.catch_warnings():  # brevitas warns about optional kernels on import
    warnings.simplefilter("ignore")
    import brevitas.nn as qnn
    from brevitas.export import export_qonnx
    from brevitas.quant import (
        Int8ActPerTensorFixedPoint,
        Int8ActPerTensorFloat,
        Int8Bias,
        Int8WeightPerChannelFloat,
        Int8WeightPerTensorFixedPoint,
        Int8WeightPerTensorFloat,
        SignedBinaryActPerTensorConst,
        SignedBinaryWeightPerTensorConst,
        Uint8ActPerTensorFixedPoint,
    )

#: Input shape of each model (one sample).
SHAPES = {"mlp_w4a4": (64,), "binary_mlp": (64,), "cnn": (1, 8, 8), "float_default": (64,),
          "per_channel": (1, 8, 8), "per_channel_logits": (64,)}


def _act(bits, signed=True):
    quant = Int8ActPerTensorFixedPoint if signed else Uint8ActPerTensorFixedPoint
    return {"act_quant": quant, "bit_width": bits, "return_quant_tensor": True}


def _weight(bits):
    return {"weight_quant": Int8WeightPerTensorFixedPoint, "weight_bit_width": bits}


_BINARY_W = {"weight_quant": SignedBinaryWeightPerTensorConst, "weight_scaling_const": 1.0}
_BINARY_A = {"act_quant": SignedBinaryActPerTensorConst, "scaling_const": 1.0,
             "return_quant_tensor": True}


def mlp_w4a4():
    """64 -> 32 -> 10, 4-bit weights and activations, a float bias and batch norm before the
    ReLU, a quantized bias (Int8Bias) on the logits."""
    return nn.Sequential(
        qnn.QuantIdentity(**_act(4)),
        qnn.QuantLinear(64, 32, bias=True, **_weight(4)),
        nn.BatchNorm1d(32),
        qnn.QuantReLU(**_act(4, signed=False)),
        qnn.QuantLinear(32, 10, bias=True, bias_quant=Int8Bias, **_weight(4)),
    )


def binary_mlp():
    """64 -> 32 -> 24 -> 10 with weights and activations in {-1, +1} (FINN's BNN style)."""
    return nn.Sequential(
        qnn.QuantIdentity(**_BINARY_A),
        qnn.QuantLinear(64, 32, bias=False, **_BINARY_W),
        nn.BatchNorm1d(32),
        qnn.QuantIdentity(**_BINARY_A),
        qnn.QuantLinear(32, 24, bias=False, **_BINARY_W),
        nn.BatchNorm1d(24),
        qnn.QuantIdentity(**_BINARY_A),
        qnn.QuantLinear(24, 10, bias=False, **_BINARY_W),
    )


def cnn():
    """8x8 input: conv 3x3 (padding 1) -> BN -> ReLU -> max-pool 2 -> conv 3x3 -> BN -> ReLU
    -> flatten -> linear, 4-bit."""
    return nn.Sequential(
        qnn.QuantIdentity(**_act(4)),
        qnn.QuantConv2d(1, 8, 3, padding=1, bias=False, **_weight(4)),
        nn.BatchNorm2d(8),
        qnn.QuantReLU(**_act(4, signed=False)),
        nn.MaxPool2d(2),
        qnn.QuantConv2d(8, 8, 3, bias=True, **_weight(4)),
        nn.BatchNorm2d(8),
        qnn.QuantReLU(**_act(4, signed=False)),
        nn.Flatten(),
        qnn.QuantLinear(32, 10, bias=False, **_weight(4)),
    )


def float_default():
    """The MLP with Brevitas' default (float, not power-of-two) scales on its hidden layer."""
    return nn.Sequential(
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=4,
                          return_quant_tensor=True),
        qnn.QuantLinear(64, 32, bias=False, weight_quant=Int8WeightPerTensorFloat,
                        weight_bit_width=4),
        nn.BatchNorm1d(32),
        qnn.QuantReLU(**_act(4, signed=False)),
        qnn.QuantLinear(32, 10, bias=False, **_weight(4)),
    )


def per_channel():
    """A CNN with per-channel (float) weight scales on its convolution and hidden linear
    layer."""
    return nn.Sequential(
        qnn.QuantIdentity(**_act(4)),
        qnn.QuantConv2d(1, 8, 3, bias=False, weight_quant=Int8WeightPerChannelFloat,
                        weight_bit_width=4),
        nn.BatchNorm2d(8),
        qnn.QuantReLU(**_act(4, signed=False)),
        nn.Flatten(),
        qnn.QuantLinear(288, 16, bias=False, weight_quant=Int8WeightPerChannelFloat,
                        weight_bit_width=4),
        qnn.QuantReLU(**_act(4, signed=False)),
        qnn.QuantLinear(16, 10, bias=False, **_weight(4)),
    )


def per_channel_logits():
    """An MLP whose last layer has per-channel weight scales (hwgen refuses it)."""
    return nn.Sequential(
        qnn.QuantIdentity(**_act(4)),
        qnn.QuantLinear(64, 10, bias=False, weight_quant=Int8WeightPerChannelFloat,
                        weight_bit_width=4),
    )


def inputs(name: str, n: int, seed: int = 1) -> np.ndarray:
    """``n`` float inputs for model ``name``, spread over its input quantizer's range."""
    return (np.random.default_rng(seed).normal(size=(n, *SHAPES[name])) * 4).astype(np.float32)


def export(name: str, path, opset: int | None = None) -> Path:
    """Build, calibrate and export model ``name`` to ``path`` (a .onnx file): with torch's
    default ONNX exporter (opset 20 here), or with ``opset`` by the older TorchScript exporter
    (``Flatten``, ``Transpose`` + ``MatMul`` instead of ``Reshape`` and ``Gemm``)."""
    torch.manual_seed(0)
    net = globals()[name]()
    net.train()
    with torch.no_grad():
        for _ in range(4):
            net(torch.from_numpy(inputs(name, 64, seed=0)))
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = m.num_features
                m.weight.copy_(torch.randn(c) * 0.5)  # some negative: negated weight rows
                m.bias.copy_(torch.randn(c) * 0.5)
                m.running_mean.copy_(torch.randn(c) * 2)
                m.running_var.copy_(torch.rand(c) * 4 + 0.5)
    net.eval()
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        options = {} if opset is None else {"opset_version": opset, "dynamo": False}
        export_qonnx(net, torch.from_numpy(inputs(name, 1)), export_path=str(path), **options)
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    for model in ("mlp_w4a4", "binary_mlp", "cnn"):
        print(export(model, out / f"{model}.onnx"))
