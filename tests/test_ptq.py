"""Post-training quantization (`--bits w4a4 --calibrate X.npy`): a float model becomes an
hwgen.nn model that compiles, agrees exactly with PyTorch and keeps its accuracy."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hwgen.compiler import compile_model
from hwgen.compiler.errors import ModelFileError, UnsupportedOpError
from hwgen.ptq import parse_bits, quantize
from hwgen.sim import golden, reference

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FLOAT = EXAMPLES / "digits_mlp_float.pt2"
CALIB = EXAMPLES / "digits_calib_x.npy"
TEST_X, TEST_Y = EXAMPLES / "digits_test_x.npy", EXAMPLES / "digits_test_y.npy"


def hwgen(*args):
    return subprocess.run([sys.executable, "-m", "hwgen", *map(str, args)], capture_output=True,
                          text=True, timeout=1800)


def load(path):
    with open(path, "rb") as file:
        return torch.export.load(file)


def export(module, x):
    return torch.export.export(module.eval(), (torch.from_numpy(x[:4]),))


def test_w4a4_keeps_the_float_accuracy_within_two_points_and_agrees_exactly(tmp_path):
    ep = load(FLOAT)
    x, y = np.load(TEST_X), np.load(TEST_Y)
    model, info = quantize(ep, np.load(CALIB), 4, 4)
    with torch.no_grad():
        float_acc = (ep.module()(torch.from_numpy(x)).argmax(1).numpy() == y).mean()
        quant_acc = (model(torch.from_numpy(x)).argmax(1).numpy() == y).mean()
    assert float_acc - quant_acc <= 0.02
    assert info["input"] == {"bits": 4, "signed": False, "scale": 1.0}
    # The quantized model compiles, and PyTorch and the golden model agree on every integer.
    path = tmp_path / "q.pt2"
    torch.export.save(export(model, x), str(path))
    graph = compile_model(path)
    layers = golden.run_layers(graph, golden.input_quant(graph.input, x))
    result = reference.agreement(graph, reference.reference(path, graph, x), layers)
    assert result["hidden_mismatches"] == result["logit_mismatches"] == 0
    assert (np.argmax(layers[-1], axis=1) == y).mean() == quant_acc


def test_batch_norm_is_folded_exactly_into_the_linear_layer():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))
    with torch.no_grad():
        net[1].running_mean.copy_(torch.randn(5))
        net[1].running_var.copy_(torch.rand(5) + 0.5)
        net[1].weight.copy_(torch.randn(5))
        net[1].bias.copy_(torch.randn(5))
    x = rng.normal(size=(200, 6)).astype(np.float32)
    model, _ = quantize(export(net, x), x, 8, 8)
    with torch.no_grad():
        want, got = net.eval()(torch.from_numpy(x)), model(torch.from_numpy(x))
    # 8 bits everywhere: close to the float model (BN folded, not dropped).
    assert float((want - got).abs().max()) < 0.1 * float(want.abs().max())


def test_signed_inputs_get_a_signed_quantizer():
    x = np.random.default_rng(1).normal(size=(64, 4)).astype(np.float32)
    _, info = quantize(export(nn.Sequential(nn.Linear(4, 2)), x), x, 4, 4)
    assert info["input"]["signed"] is True


@pytest.mark.parametrize(("net", "words"), [
    (nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2)), "sigmoid"),
    (nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)), "each followed by a ReLU"),
    (nn.Sequential(nn.Linear(4, 4), nn.ReLU()), "must end with a linear layer"),
])
def test_unsupported_models_are_named(net, words):
    x = np.zeros((8, 4), np.float32)
    with pytest.raises(UnsupportedOpError, match=words):
        quantize(export(net, x), x, 4, 4)


@pytest.mark.parametrize("text", ["w4", "a4w4", "w1a4", "w4a9", "w4a0"])
def test_bits_must_look_like_w4a4(text):
    with pytest.raises(ModelFileError, match="must look like w4a4"):
        parse_bits(text)


def test_bits_needs_calibrate_and_a_float_model(tmp_path):
    run = hwgen("verify", FLOAT, "--bits", "w4a4", "--out", tmp_path / "a")
    assert run.returncode != 0 and "needs both --bits" in run.stderr
    run = hwgen("verify", EXAMPLES / "digits_mlp_w4a4.pt", "--bits", "w4a4", "--calibrate",
                CALIB, "--out", tmp_path / "b")
    assert run.returncode != 0 and "already quantized" in run.stderr
    assert json.loads((tmp_path / "b" / "report.json").read_text())["status"] == "failed"


@pytest.mark.slow
def test_float_digits_mlp_builds_bit_exact_with_its_accuracy_drop(tmp_path):
    out = tmp_path / "v"
    run = hwgen("verify", FLOAT, "--bits", "w4a4", "--calibrate", CALIB, "--inputs", TEST_X,
                "--labels", TEST_Y, "--out", out)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["verification"]["mismatches"] == 0
    acc = report["accuracy"]
    assert acc["float"] - acc["golden"] <= 0.02
    assert acc["drop_points"] == round(100 * (acc["float"] - acc["golden"]), 2)
    assert (out / "quantized.pt2").exists()
    assert "a drop of" in run.stdout
