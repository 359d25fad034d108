"""The shipped Brevitas example (examples/train_brevitas_digits.py): its QONNX file scores as
recorded in the golden model, agrees exactly with qonnx's executor on the 360 held-out digits,
retrains to the same integer model, and verifies bit-exact in Verilator with `hwgen verify`."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hwgen.compiler import compile_model
from hwgen.sim import golden, reference

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODEL = EXAMPLES / "digits_mlp_w4a4_brevitas.onnx"


def test_example_scores_as_recorded_and_agrees_with_the_qonnx_executor():
    record = json.loads(MODEL.with_suffix(".json").read_text())
    x, y = np.load(EXAMPLES / "digits_test_x.npy"), np.load(EXAMPLES / "digits_test_y.npy")
    graph = compile_model(MODEL)
    layers = golden.run_layers(graph, golden.input_quant(graph.input, x))
    assert round(float(np.mean(layers[-1].argmax(axis=1) == y)), 4) == record["test_accuracy"]
    agreement = reference.agreement(graph, reference.reference(MODEL, graph, x), layers)
    assert agreement["hidden_mismatches"] == agreement["logit_mismatches"] == 0
    assert agreement["argmax_mismatches"] == 0


@pytest.mark.slow
def test_retraining_reproduces_the_shipped_model(tmp_path):
    for name in ("train_brevitas_digits.py", "train_digits_mlp.py"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, "train_brevitas_digits.py"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=900, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    # The same integer model and record; the file's bytes may differ with the exporter's
    # versions (the test extras are not pinned exactly).
    assert (tmp_path / MODEL.with_suffix(".json").name).read_text() == \
        MODEL.with_suffix(".json").read_text()
    again, shipped = compile_model(tmp_path / MODEL.name), compile_model(MODEL)
    assert repr(again.input) == repr(shipped.input)
    for a, b in zip(again.layers, shipped.layers, strict=True):
        assert np.array_equal(a.weights, b.weights) and np.array_equal(a.thresholds,
                                                                         b.thresholds)
        assert np.array_equal(a.bias, b.bias)


@pytest.mark.slow
def test_example_verifies_bit_exact(tmp_path):
    out = tmp_path / "build"
    run = subprocess.run([sys.executable, "-m", "hwgen", "verify", str(MODEL), "--inputs",
                          str(EXAMPLES / "digits_test_x.npy"), "--labels",
                          str(EXAMPLES / "digits_test_y.npy"), "--out", str(out)],
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["verification"]["mismatches"] == 0
    assert report["verification"]["vectors"] == 360
    assert report["agreement"]["reference"] == "QONNX"
    record = json.loads(MODEL.with_suffix(".json").read_text())
    assert round(report["accuracy"]["golden"], 4) == record["test_accuracy"]
