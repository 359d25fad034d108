"""Convolutional networks end to end: the shipped CNN examples score as recorded, and CNNs
verify bit-exactly in Verilator (odd sizes, folding that does not divide the channels,
back-pressure, the cycle formula, a corrupted convolution threshold)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import hwgen.nn as hn
from hwgen.compiler import compile_model
from hwgen.sim import golden

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CNNS = {
    "digits_cnn_w2a2": ("digits_test_x.npy", "digits_test_y.npy", (1, 8, 8)),
    "mnist_cnn_w2a2": ("mnist_test_x.npy", "mnist_test_y.npy", (1, 28, 28)),
}


def hwgen(*args):
    return subprocess.run([sys.executable, "-m", "hwgen", *map(str, args)], capture_output=True,
                          text=True, timeout=1800)


@pytest.mark.parametrize("name", sorted(CNNS))
def test_example_scores_as_recorded_in_pytorch_and_the_golden_model(name):
    x_file, y_file, shape = CNNS[name]
    record = json.loads((EXAMPLES / f"{name}.json").read_text())
    x = np.load(EXAMPLES / x_file).astype(np.float32)
    y = np.load(EXAMPLES / y_file)
    with open(EXAMPLES / f"{name}.pt", "rb") as file:
        net = torch.export.load(file).module()
    with torch.no_grad():
        logits = net(torch.from_numpy(x).reshape(-1, *shape))
    accuracy = float((logits.argmax(dim=1).numpy() == y).mean())
    assert round(accuracy, 4) == record["test_accuracy"] >= 0.95
    graph = compile_model(EXAMPLES / f"{name}.pt")
    gold = golden.run(graph, golden.input_quant(graph.input, x))
    # Integer logits times the logit scale are PyTorch's logits, exactly.
    assert np.array_equal(gold * graph.meta["logit_scale"], logits.numpy())


def odd_cnn():
    """A 5x5 kernel at stride 2 with padding 1 on a non-square 3-channel map, a (3, 2)
    kernel, 5 and 4 channels, a padded max-pool, batch norm with negative scales."""
    torch.manual_seed(0)
    model = nn.Sequential(
        hn.QuantIdentity(3, False, 0.125),
        hn.QuantConv2d(3, 5, 5, stride=2, padding=1, weight_bits=3, bias=True),
        nn.BatchNorm2d(5), hn.QuantReLU(2, 0.5),
        hn.QuantConv2d(5, 4, (3, 2), stride=(1, 2), padding=(1, 0), weight_bits=2,
                       scaling="mean"),
        nn.BatchNorm2d(4), hn.QuantReLU(2, 0.5),
        nn.MaxPool2d(2, padding=1), nn.Flatten(),
        hn.QuantLinear(4 * 3 * 2, 7, weight_bits=4))
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) * 2 - 1)
            m.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)
    return model.eval()


# pe and simd that do not divide the channels where the stream allows it (conv0's 5 output
# channels in lanes of 2 and 3), and lanes that do (a max-pool's lanes divide its channels).
ODD_FOLD = {"conv0": {"pe": 2, "simd": 3}, "conv1": {"pe": 3, "simd": 5},
            "pool0": {"lanes": 2}, "fc0": {"pe": 3, "simd": 4}}


@pytest.fixture
def odd_model(tmp_path):
    model = odd_cnn()
    x = torch.rand(40, 3, 11, 9)
    path = tmp_path / "odd_cnn.pt2"
    torch.export.save(torch.export.export(model, (x[:2],)), path)
    np.save(tmp_path / "x.npy", x.numpy())
    (tmp_path / "fold.json").write_text(json.dumps(ODD_FOLD))
    return path, tmp_path / "x.npy", tmp_path / "fold.json"


@pytest.mark.slow
def test_odd_cnn_verifies_bit_exact_under_backpressure(tmp_path, odd_model):
    path, x, fold = odd_model
    out = tmp_path / "build"
    run = hwgen("verify", path, "--inputs", x, "--fold", fold, "--out", out)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((out / "report.json").read_text())
    v = report["verification"]
    assert v["mismatches"] == 0 and v["backpressure"] and v["stall_fraction"] >= 0.25
    assert v["cycles_match"], (v["cycles_per_frame_measured"], v["cycles_per_frame_formula"])
    assert report["agreement"]["hidden_mismatches"] == 0
    assert report["agreement"]["logit_mismatches"] == 0
    folding = json.loads((out / "folding.json").read_text())
    assert folding == ODD_FOLD
    kinds = {layer["type"] for layer in report["layers"]}
    assert {"Pad", "SlidingWindow", "MaxPool", "MVAU", "WidthConverter", "FIFO"} <= kinds


@pytest.mark.slow
def test_corrupted_convolution_threshold_fails(tmp_path, odd_model):
    path, x, fold = odd_model
    out = tmp_path / "build"
    run = hwgen("verify", path, "--inputs", x, "--fold", fold, "--out", out,
                "--inject-fault", "threshold", "--no-backpressure")
    assert run.returncode == 1, run.stdout + run.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["verification"]["mismatches"] > 0
    assert "windows affected" in report["fault_injected"]
    # The first divergent layer is the corrupted one, found by simulating prefixes.
    layer = report["fault_injected"].split(":")[0].removeprefix("layer ")
    assert report["divergence"]["layer"] == layer


@pytest.mark.slow
@pytest.mark.parametrize("name, vectors", [("digits_cnn_w2a2", None), ("mnist_cnn_w2a2", 300)])
def test_example_verifies_at_the_cycle_formula(tmp_path, name, vectors):
    x_file, y_file, _ = CNNS[name]
    x, y = np.load(EXAMPLES / x_file), np.load(EXAMPLES / y_file)
    if vectors:
        x, y = x[:vectors], y[:vectors]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "build"
    run = hwgen("verify", EXAMPLES / f"{name}.pt", "--board", "icebreaker", "--inputs",
                tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--out", out)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((out / "report.json").read_text())
    v = report["verification"]
    assert v["mismatches"] == 0 and v["vectors"] == len(x) and v["backpressure"]
    # Every frame after the first few leaves exactly the cycle formula after the previous.
    assert v["cycles_match"] and v["cycles_per_frame_measured"] == v["cycles_per_frame_formula"]
    assert v["latency_cycles_formula"] == report["latency_cycles"]


def test_cli_errors_keep_their_brackets(tmp_path):
    """Error messages name shapes like [batch, features]; the terminal shows them verbatim."""
    class Reshaped(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = hn.QuantIdentity(4, False, 1.0)
            self.conv = hn.QuantConv2d(1, 2, 3)
            self.act = hn.QuantReLU(2, 0.5)
            self.fc = hn.QuantLinear(2 * 4 * 4, 2)

        def forward(self, x):
            y = self.q(x).view(len(x), 1, 6, 6)
            return self.fc(self.act(self.conv(y)).flatten(1))

    path = tmp_path / "reshaped.pt2"
    torch.export.save(torch.export.export(Reshaped().eval(), (torch.rand(2, 36),)), path)
    run = hwgen("verify", path, "--out", tmp_path / "build")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "turns [batch, features] [2, 36] into a feature map" in " ".join(
        (run.stdout + run.stderr).split())


@pytest.mark.slow
def test_a_wide_pad_keeps_the_cycle_formula(tmp_path):
    """Padding 3 around a 3x3 convolution: the pad waits for the window generator to free
    rows for its borders, and the FIFO before it, sized by the rate model, absorbs that."""
    torch.manual_seed(0)
    model = nn.Sequential(
        hn.QuantIdentity(2, False, 0.5),
        hn.QuantConv2d(1, 2, 3, weight_bits=2), hn.QuantReLU(2, 0.5),
        hn.QuantConv2d(2, 4, 3, padding=3, weight_bits=2), hn.QuantReLU(2, 0.5),
        nn.Flatten(), hn.QuantLinear(4 * 18 * 18, 3, weight_bits=2)).eval()
    x = torch.rand(24, 1, 16, 16)
    path = tmp_path / "wide_pad.pt2"
    torch.export.save(torch.export.export(model, (x[:2],)), path)
    np.save(tmp_path / "x.npy", x.numpy())
    fold = {"conv0": {"pe": 1, "simd": 1}, "conv1": {"pe": 4, "simd": 2},
            "fc0": {"pe": 3, "simd": 64}}
    (tmp_path / "fold.json").write_text(json.dumps(fold))
    out = tmp_path / "build"
    run = hwgen("verify", path, "--inputs", tmp_path / "x.npy", "--fold", tmp_path / "fold.json",
                "--out", out, "--no-backpressure")
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["verification"]["cycles_match"]
    assert report["latency_cycles"] == report["verification"]["latency_cycles_formula"]
    fifo = next(layer for layer in report["layers"] if layer["name"] == "conv1_pad_fifo")
    # The border run alone (126 beats, 196 input beats per 3528-cycle frame) would give 9.
    assert fifo["memories"][0]["depth"] + 1 > 9
