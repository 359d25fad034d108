"""PyTorch reference vs golden model on the shipped example: exact agreement."""

import json
from pathlib import Path

import numpy as np
import pytest

from hwgen.compiler import compile_model
from hwgen.sim import golden
from hwgen.sim.reference import agreement, reference

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODEL = EXAMPLES / "digits_mlp_w4a4.pt"


@pytest.fixture(scope="module")
def graph():
    return compile_model(MODEL, output="label")


def compare(graph, x):
    ref = reference(MODEL, graph, x)
    layers = golden.run_layers(graph, golden.input_quant(graph.input, x))
    return agreement(graph, ref, layers), layers


def test_test_digits_agree_exactly(graph):
    x = np.load(EXAMPLES / "digits_test_x.npy")
    y = np.load(EXAMPLES / "digits_test_y.npy")
    assert x.shape == (360, 64) and x.dtype == np.float32 and y.dtype == np.int64
    result, layers = compare(graph, x)
    assert result["vectors"] == 360
    assert result["hidden_mismatches"] == 0 and result["logit_mismatches"] == 0
    assert result["argmax_mismatches"] == 0 and result["first"] is None
    accuracy = float(np.mean(layers[-1][:, 0] == y))
    recorded = json.loads((EXAMPLES / "digits_mlp_w4a4.json").read_text())
    assert accuracy == pytest.approx(recorded["test_accuracy"], abs=1e-4)
    assert accuracy > 0.9


def test_random_and_extreme_inputs_agree_exactly(graph):
    rng = np.random.default_rng(0)
    x = np.concatenate([
        rng.uniform(-4, 20, (1500, 64)),                 # beyond the whole input range
        rng.integers(0, 17, (1500, 64)),                 # pixel values 0..16
        rng.integers(-2, 36, (500, 64)) / 2,             # half-integers: rounding ties
        np.full((1, 64), -1e3), np.zeros((1, 64)),       # all-min
        np.full((1, 64), 15), np.full((1, 64), 1e3),     # all-max
    ]).astype(np.float32)
    result, _ = compare(graph, x)
    assert result["vectors"] == len(x)
    assert result["hidden_mismatches"] == 0 and result["logit_mismatches"] == 0, result
    assert result["argmax_mismatches"] <= result["argmax_ties"]


def test_agreement_sees_a_corrupted_threshold():
    graph = compile_model(MODEL)
    x = np.load(EXAMPLES / "digits_test_x.npy")
    ref = reference(MODEL, graph, x)
    graph.layers[0].thresholds[:, 7] -= 1000           # then keep rows non-decreasing
    graph.layers[0].thresholds[:] = np.maximum.accumulate(graph.layers[0].thresholds, axis=1)
    layers = golden.run_layers(graph, golden.input_quant(graph.input, x))
    result = agreement(graph, ref, layers)
    assert result["hidden_mismatches"] > 0
    name, _, _, mine, gold = result["first"]
    assert name == "fc0" and mine != gold


def test_graph_with_baked_in_batch_size(tmp_path):
    import torch
    from torch import nn

    from hwgen.nn import QuantIdentity, QuantLinear

    class Viewed(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = QuantIdentity(4, False, 1.0)
            self.fc = QuantLinear(16, 3, bias=True, input_scale=1.0)

        def forward(self, x):
            return self.fc(self.q(x).view(4, 16))

    torch.manual_seed(0)
    net = Viewed().eval()
    path = tmp_path / "viewed.pt2"
    torch.export.save(torch.export.export(net, (torch.rand(4, 4, 4) * 16,)), path)
    graph = compile_model(path)
    x = np.random.default_rng(1).uniform(0, 16, (10, 4, 4)).astype(np.float32)
    ref = reference(path, graph, x)
    layers = golden.run_layers(graph, golden.input_quant(graph.input, x))
    result = agreement(graph, ref, layers)
    assert result["vectors"] == 10 and result["logit_mismatches"] == 0
