"""Train the digits MLP with Brevitas and export it to QONNX: the QONNX route's example.

The same 64-64-64-10 network, data split, seeds and schedule as ``train_digits_mlp.py``, with
Brevitas layers: 4-bit weights and activations, power-of-two ("fixed point") scales that
Brevitas learns, batch norm before each ReLU, and a 32-bit quantized bias on the logits.
Deterministic. Writes, next to this script:

* ``digits_mlp_w4a4_brevitas.onnx``: ``brevitas.export.export_qonnx`` output, saved as one
  file (``hwgen build`` input);
* ``digits_mlp_w4a4_brevitas.json``: test accuracy in PyTorch, seeds, epochs...

Run: ``python examples/train_brevitas_digits.py`` (needs ``pip install brevitas onnx
onnxoptimizer``; the test extras include them).
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path

import onnx
from torch import nn
from train_digits_mlp import BITS, accuracy, data, seed, train, write_record

with warnings.catch_warnings():  # brevitas warns about optional kernels on import
    warnings.simplefilter("ignore")
    import brevitas
    import brevitas.nn as qnn
    from brevitas.export import export_qonnx
    from brevitas.quant import (
        Int8WeightPerTensorFixedPoint,
        Int32Bias,
        Uint8ActPerTensorFixedPoint,
    )

HERE = Path(__file__).resolve().parent
NAME = "digits_mlp_w4a4_brevitas"


def model() -> nn.Sequential:
    act = {"act_quant": Uint8ActPerTensorFixedPoint, "bit_width": BITS,
           "return_quant_tensor": True}
    weight = {"weight_quant": Int8WeightPerTensorFixedPoint, "weight_bit_width": BITS}
    return nn.Sequential(
        qnn.QuantIdentity(**act),               # raw pixels 0..16
        qnn.QuantLinear(64, 64, bias=False, **weight),
        nn.BatchNorm1d(64),
        qnn.QuantReLU(**act),
        qnn.QuantLinear(64, 64, bias=False, **weight),
        nn.BatchNorm1d(64),
        qnn.QuantReLU(**act),
        qnn.QuantLinear(64, 10, bias=True, bias_quant=Int32Bias, **weight),
    )


def export(net, xv, path: Path):
    """QONNX, saved as a single file (the exporter writes the weights beside it)."""
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(net, xv[:1], export_path=f"{tmp}/model.onnx")
        onnx.save_model(onnx.load(f"{tmp}/model.onnx"), str(path),
                        save_as_external_data=False)


def main():
    start = time.time()
    seed()
    xt, yt, xv, yv = data()
    net = train(model(), xt, yt, xv, yv)
    test_acc, train_acc = accuracy(net, xv, yv), accuracy(net, xt, yt)
    export(net, xv, HERE / f"{NAME}.onnx")
    write_record(HERE / f"{NAME}.json", f"{NAME}.onnx",
                 "QuantIdentity(u4) - 64x64 - BN - QuantReLU(4b) - 64x64 - BN - "
                 "QuantReLU(4b) - 64x10 (+int32 bias), Brevitas fixed-point quantizers",
                 len(xt), len(xv), train_acc, test_acc, brevitas=brevitas.__version__)
    print(f"test accuracy {test_acc:.4f} ({len(xv)} held-out digits), "
          f"{time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
