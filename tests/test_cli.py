"""The command line: help, and bad input giving one clear paragraph and a non-zero exit, with
no report that claims success."""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hwgen.nn import QuantIdentity, QuantLinear, QuantReLU

ROOT = Path(__file__).resolve().parent.parent


def hwgen(*args):
    return subprocess.run([sys.executable, "-m", "hwgen", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


def export(module, path, width):
    ep = torch.export.export(module.eval(), (torch.zeros(2, width),))
    torch.export.save(ep, str(path))
    return path


def mlp(*sizes, quantize_input=True):
    layers = [QuantIdentity(bits=4, signed=False, scale=1.0)] if quantize_input else []
    for i, (n, m) in enumerate(itertools.pairwise(sizes)):
        last = i == len(sizes) - 2
        layers.append(QuantLinear(n, m, weight_bits=4, bias=last,
                                  input_scale=(1.0 if i == 0 else 0.25) if last else None))
        if not last:
            layers += [nn.BatchNorm1d(m), QuantReLU(bits=4, scale=0.25)]
    return nn.Sequential(*layers)


def assert_refused(run, out, *words):
    assert run.returncode == 2, run.stdout + run.stderr
    message = " ".join(run.stderr.split())
    for word in words:
        assert word in message, message
    assert "Traceback" not in run.stderr
    report = out / "report.json"
    if report.exists():
        assert json.loads(report.read_text())["status"] == "failed"
    assert not list(out.rglob("*.bin"))


def test_help_teaches():
    run = hwgen("build", "--help")
    assert run.returncode == 0
    for option in ("--board", "--inputs", "--labels", "--fold", "--out", "--no-bitstream"):
        assert option in run.stdout
    assert "icebreaker" in hwgen("boards").stdout


def test_not_a_model(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("these are not weights\n")
    assert_refused(hwgen("build", bad, "--out", tmp_path / "o"), tmp_path / "o", "notes.pt")


def test_missing_file(tmp_path):
    assert_refused(hwgen("build", tmp_path / "nope.pt", "--out", tmp_path / "o"),
                   tmp_path / "o", "nope.pt")


def test_pickled_module_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save(mlp(64, 10), path)
    assert_refused(hwgen("build", path, "--out", tmp_path / "o"), tmp_path / "o", "pickle",
                   "torch.export")


def test_unsupported_op_named(tmp_path):
    model = nn.Sequential(QuantIdentity(bits=4, signed=False, scale=1.0),
                          QuantLinear(16, 8, weight_bits=4), nn.Sigmoid(),
                          QuantReLU(bits=4, scale=0.25))
    path = export(model, tmp_path / "sigmoid.pt2", 16)
    assert_refused(hwgen("build", path, "--out", tmp_path / "o"), tmp_path / "o", "sigmoid")


def test_float_layer_without_quantizer(tmp_path):
    path = export(mlp(16, 8, 4, quantize_input=False), tmp_path / "float.pt2", 16)
    run = hwgen("build", path, "--out", tmp_path / "o")
    assert_refused(run, tmp_path / "o", "quant")


@pytest.mark.slow
def test_model_too_big_for_board(tmp_path):
    path = export(mlp(784, 1024, 1024, 10), tmp_path / "big.pt2", 784)
    run = hwgen("build", path, "--board", "icebreaker", "--out", tmp_path / "o")
    assert_refused(run, tmp_path / "o", "block RAM", "fc1", "over by")


def test_unknown_board(tmp_path):
    run = hwgen("build", ROOT / "examples" / "digits_mlp_w4a4.pt", "--board", "de10",
                "--out", tmp_path / "o")
    assert_refused(run, tmp_path / "o", "de10", "icebreaker")


def test_bad_inputs_shape(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 7), dtype=np.float32))
    run = hwgen("build", ROOT / "examples" / "digits_mlp_w4a4.pt", "--inputs",
                tmp_path / "x.npy", "--out", tmp_path / "o", "--no-bitstream")
    assert_refused(run, tmp_path / "o", "(3, 7)", "64")


def test_fold_override_and_random_vectors(tmp_path):
    fold = tmp_path / "fold.json"
    fold.write_text(json.dumps({"fc0": {"pe": 4, "simd": 8}, "fc2": {"pe": 3, "simd": 5}}))
    out = tmp_path / "o"
    run = hwgen("build", ROOT / "examples" / "digits_mlp_w4a4.pt", "--fold", fold,
                "--vectors", 200, "--no-bitstream", "--out", out)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((out / "report.json").read_text())
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert (layers["fc0"]["pe"], layers["fc0"]["simd"]) == (4, 8)
    assert (layers["fc2"]["pe"], layers["fc2"]["simd"]) == (3, 5)  # non-dividing: ceil
    assert layers["fc2"]["cycles"] == 4 * 13
    assert json.loads((out / "folding.json").read_text())["fc0"] == {"pe": 4, "simd": 8}
    ver = report["verification"]
    assert ver["mismatches"] == 0 and ver["vectors"] == 200
    assert ver["cycles_per_frame_measured"] == ver["cycles_per_frame_formula"]
    assert report["latency_cycles"] == ver["latency_cycles_formula"]
    # Random vectors include the all-minimum and all-maximum inputs.
    x_int = np.load(out / "vectors_int.npy")
    assert (x_int[0] == 0).all() and (x_int[1] == 15).all()
    assert report["resources"] is None and "bitstream" not in report


def test_label_output(tmp_path):
    out = tmp_path / "o"
    run = hwgen("build", ROOT / "examples" / "digits_mlp_w4a4.pt", "--output", "label",
                "--inputs", ROOT / "examples" / "digits_test_x.npy", "--labels",
                ROOT / "examples" / "digits_test_y.npy", "--no-bitstream", "--out", out)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["layers"][-1]["type"] == "LabelSelect"
    assert report["verification"]["mismatches"] == 0
    golden = np.load(out / "golden.npy")
    assert golden.shape == (360, 1)
    assert np.array_equal(np.load(out / "simulated.npy"), golden)
    labels = np.load(ROOT / "examples" / "digits_test_y.npy")
    assert report["accuracy"]["golden"] == np.mean(golden[:, 0] == labels)
