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
from hwgen.ptq import _float_layers, _fused, parse_bits, quantize, run_float
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


def _bn_net(eps):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5, eps=eps), nn.ReLU(inplace=True),
                        nn.Linear(5, 3))
    with torch.no_grad():
        net[1].running_mean.copy_(torch.randn(5))
        net[1].running_var.copy_(torch.rand(5) * 0.1)  # small: eps matters
        net[1].weight.copy_(torch.randn(5))
        net[1].bias.copy_(torch.randn(5))
    return net.eval()


# torch's own decompositions deep-copy a pytree spec that warns on 2.13.
@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
@pytest.mark.parametrize("decomposed", [False, True])
def test_batch_norm_is_folded_into_the_linear_layer(decomposed):
    """Both batch norm ops torch.export writes (aten.batch_norm, and after decompositions
    _native_batch_norm_legit_no_training), with an eps that matters."""
    net = _bn_net(eps=0.3)
    x = np.random.default_rng(0).normal(size=(50, 6))
    ep = export(net, x.astype(np.float32))
    if decomposed:
        table = torch.export.default_decompositions()
        table.pop(torch.ops.aten.linear.default, None)
        ep = ep.run_decompositions(table)
    targets = {str(node.target) for node in ep.graph.nodes}
    assert any("batch_norm" in t for t in targets)
    (_, w0, b0), _, (_, w1, b1) = _fused(_float_layers(ep))
    h = np.maximum(x @ w0.T + b0, 0) @ w1.T + b1
    with torch.no_grad():
        want = net.double()(torch.from_numpy(x)).numpy()
    assert np.abs(h - want).max() < 1e-9


def test_signed_inputs_get_a_signed_quantizer():
    x = np.random.default_rng(1).normal(size=(64, 4)).astype(np.float32)
    _, info = quantize(export(nn.Sequential(nn.Linear(4, 2)), x), x, 4, 4)
    assert info["input"]["signed"] is True


@pytest.mark.parametrize(("net", "words"), [
    (nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2)), "sigmoid"),
    (nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)), "linear -> linear"),
    (nn.Sequential(nn.Linear(4, 4), nn.ReLU()), "whose outputs are the logits"),
    (nn.Sequential(nn.ReLU(), nn.Linear(4, 2)), "relu -> linear"),
    (nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.ReLU(),
                   nn.Linear(4, 2)), "no running statistics"),
])
def test_unsupported_models_are_named(net, words):
    x = np.zeros((8, 4), np.float32)
    with pytest.raises(UnsupportedOpError, match=words):
        quantize(export(net, x), x, 4, 4)


def test_the_float_accuracy_runs_in_the_programs_own_batches():
    """A program exported with a static batch of 8, inputs as [N, 1, 8] vectors."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(8, 3)).eval()
    ep = torch.export.export(net, (torch.zeros(8, 1, 8),))
    x = np.random.default_rng(2).normal(size=(21, 8)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x).reshape(21, 1, 8)).numpy()
    assert np.allclose(run_float(ep, x), want, rtol=0, atol=1e-6)
    model, _ = quantize(ep, x, 8, 8)
    assert model(torch.from_numpy(x).reshape(21, 1, 8)).shape == (21, 3)


@pytest.mark.parametrize(("x", "words"), [
    (np.zeros((8, 5), np.float32), "shape \\(8, 5\\), but the model takes vectors of shape"),
    (np.full((8, 4), np.nan, np.float32), "NaN or infinite"),
    (np.zeros((8, 4), np.float32), "only zeros"),
    (np.zeros((8, 4), np.complex64), "complex64 values"),
])
def test_bad_calibration_inputs_are_named(x, words):
    ep = export(nn.Sequential(nn.Linear(4, 2)), np.zeros((8, 4), np.float32))
    with pytest.raises(ModelFileError, match=words):
        quantize(ep, x, 4, 4)


def test_one_calibration_vector_is_enough(tmp_path):
    from hwgen.ptq import export as save
    x = np.ones((1, 4), np.float32)
    ep = export(nn.Sequential(nn.Linear(4, 2)), np.zeros((8, 4), np.float32))
    model, _ = quantize(ep, x, 4, 4)
    graph = compile_model(save(model, ep, tmp_path / "q.pt2"))
    assert graph.input.n == 4


@pytest.mark.parametrize("text", ["w4", "a4w4", "w1a4", "w4a9", "w4a0", "w4a1"])
def test_bits_must_look_like_w4a4(text):
    with pytest.raises(ModelFileError, match="must look like w4a4"):
        parse_bits(text)


def test_bits_needs_calibrate_and_a_float_model(tmp_path):
    run = hwgen("verify", FLOAT, "--bits", "w4a4", "--out", tmp_path / "a")
    assert run.returncode == 2 and "needs both --bits" in run.stderr
    run = hwgen("verify", EXAMPLES / "digits_mlp_w4a4.pt", "--bits", "w4a4", "--calibrate",
                CALIB, "--out", tmp_path / "b")
    assert run.returncode == 2 and "already quantized" in run.stderr
    assert json.loads((tmp_path / "b" / "report.json").read_text())["status"] == "failed"
    assert not (tmp_path / "b" / "quantized.pt2").exists()
    run = hwgen("verify", FLOAT, "--bits", "w4", "--calibrate", CALIB, "--out", tmp_path / "c")
    assert run.returncode == 2 and "must look like w4a4" in run.stderr
    assert not (tmp_path / "c").exists()  # refused before anything was built


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


def _float_cnn():
    """A float CNN with everything post-training quantization reads: padding, a stride,
    batch norm after a convolution, a padded max-pool, the flatten, linear layers."""
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                        nn.MaxPool2d(2, padding=1), nn.Conv2d(6, 5, 3, stride=2), nn.ReLU(),
                        nn.Flatten(), nn.Linear(5 * 2 * 2, 8), nn.ReLU(), nn.Linear(8, 4))
    with torch.no_grad():
        net[1].running_mean.copy_(torch.randn(6) * 0.1)
        net[1].running_var.copy_(torch.rand(6) + 0.5)
        net[1].weight.copy_(torch.randn(6))  # some channels with a negative scale
    return net.eval()


@pytest.mark.parametrize("bits", [(4, 4), (2, 3)])
def test_a_float_cnn_quantizes_and_agrees_exactly(tmp_path, bits):
    net = _float_cnn()
    x = np.random.default_rng(0).random((64, 2, 9, 10)).astype(np.float32)
    ep = export(net, x)
    model, info = quantize(ep, x[:32], *bits)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["QuantIdentity", "QuantConv2d", "QuantReLU", "MaxPool2d", "QuantConv2d",
                     "QuantReLU", "Flatten", "QuantLinear", "QuantReLU", "QuantLinear"]
    assert model[1].scaling == ("mean" if bits[0] == 2 else "max")
    assert len(info["activations"]) == 3
    path = tmp_path / "q.pt2"
    torch.export.save(export(model, x), str(path))
    graph = compile_model(path)
    layers = golden.run_layers(graph, golden.input_quant(graph.input, x))
    result = reference.agreement(graph, reference.reference(path, graph, x), layers)
    assert result["hidden_mismatches"] == result["logit_mismatches"] == 0, result


@pytest.mark.parametrize(("net", "words"), [
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2)), "conv -> flatten"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                   nn.Linear(2, 2)), "conv -> pool -> relu"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, groups=1, dilation=2), nn.ReLU(),
                   nn.Flatten(), nn.Linear(8, 2)), "dilation"),
])
def test_unsupported_cnns_are_named(net, words):
    x = np.zeros((4, 1, 4, 4), np.float32)
    with pytest.raises(UnsupportedOpError, match=words):
        quantize(export(net, x), x + 1, 4, 4)
