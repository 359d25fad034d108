"""Brevitas-exported QONNX models through `hwgen verify`: the generated hardware is bit-exact
in Verilator (back to back and under back-pressure, at the cycle formula), the golden model
agrees exactly with qonnx's executor, and a corrupted weight fails verification."""

import json
import subprocess
import sys

import numpy as np
import pytest
from models import inputs


def hwgen(*args):
    return subprocess.run([sys.executable, "-m", "hwgen", *map(str, args)], capture_output=True,
                          text=True, timeout=1800)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp_w4a4", "binary_mlp", "cnn"])
def test_brevitas_model_verifies_bit_exact(tmp_path, exported, name):
    np.save(tmp_path / "x.npy", inputs(name, 60))
    out = tmp_path / "build"
    run = hwgen("verify", exported(name), "--board", "icebreaker", "--inputs",
                tmp_path / "x.npy", "--out", out)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "QONNX vs golden: 0 hidden, 0 logit mismatches" in run.stdout + run.stderr
    report = json.loads((out / "report.json").read_text())
    v = report["verification"]
    assert v["mismatches"] == 0 and v["vectors"] == 60 and v["backpressure"]
    assert v["cycles_match"], (v["cycles_per_frame_measured"], v["cycles_per_frame_formula"])
    agreement = report["agreement"]
    assert agreement["reference"] == "QONNX"
    assert agreement["hidden_mismatches"] == agreement["logit_mismatches"] == 0


@pytest.mark.slow
def test_corrupted_weight_of_a_qonnx_model_fails(tmp_path, exported):
    np.save(tmp_path / "x.npy", inputs("mlp_w4a4", 40))
    out = tmp_path / "build"
    run = hwgen("verify", exported("mlp_w4a4"), "--inputs", tmp_path / "x.npy", "--out", out,
                "--inject-fault", "weight", "--no-backpressure")
    assert run.returncode == 1, run.stdout + run.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["verification"]["mismatches"] > 0


def test_bits_on_a_qonnx_model_is_refused(tmp_path, exported):
    run = hwgen("verify", exported("mlp_w4a4"), "--bits", "w4a4", "--calibrate",
                exported("mlp_w4a4"), "--out", tmp_path / "build")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "is an ONNX model" in run.stderr and "without --bits" in run.stderr
