"""`hwgen verify`, JUnit and JSON output, first-divergence debugging with a waveform, the
simulator cache, and `hwgen.testing.assert_bit_exact`."""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from vcdvcd import VCDVCD

from hwgen.testing import assert_bit_exact

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "digits_mlp_w4a4.pt"
TEST_X = ROOT / "examples" / "digits_test_x.npy"
CHECKS = {"pytorch_vs_golden", "rtl_vs_golden[stream]", "rtl_vs_golden[backpressure]",
          "cycles_per_frame", "latency", "framing", "backpressure_stall"}


def hwgen(*args):
    return subprocess.run([sys.executable, "-m", "hwgen", *map(str, args)], capture_output=True,
                          text=True, timeout=1800)


def junit_cases(path):
    suite = ET.parse(path).getroot().find("testsuite")
    return {case.get("name"): case.find("failure") for case in suite.findall("testcase")}


@pytest.mark.slow
def test_verify_passes_with_junit_json_and_a_warm_cache(tmp_path):
    out = tmp_path / "v"
    run = hwgen("verify", EXAMPLE, "--inputs", TEST_X, "--out", out, "--junit",
                tmp_path / "j.xml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "PASSED" in run.stdout
    cases = junit_cases(tmp_path / "j.xml")
    assert set(cases) == CHECKS and all(f is None for f in cases.values())
    assert not list(out.glob("*.bin")) and not (out / "board").exists()
    # Same model again: the compiled simulator comes from the cache.
    again = hwgen("verify", EXAMPLE, "--inputs", TEST_X, "--out", out, "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["status"] == "passed" and report["verification"]["simulator_built"] is False
    assert report["verification"]["vectors"] == 360 and report["resources"] is None
    assert all(check["passed"] for check in report["checks"])


@pytest.mark.slow
def test_corrupted_weight_names_the_first_divergent_layer(tmp_path):
    out = tmp_path / "v"
    run = hwgen("verify", EXAMPLE, "--inputs", TEST_X, "--out", out, "--junit",
                tmp_path / "j.xml", "--inject-fault", "weight", "--no-backpressure")
    assert run.returncode == 1, run.stdout + run.stderr
    report = json.loads((out / "report.json").read_text())
    faulty = report["fault_injected"].split(":")[0].removeprefix("layer ")
    found = report["divergence"]
    assert found["layer"] == faulty
    assert f"First divergent layer: {faulty}" in run.stderr
    golden = np.load(out / "golden.npy")
    simulated = np.load(out / "simulated.npy")
    assert found["frame"] == int(np.argwhere(golden != simulated)[0][0])
    assert found["expected"] != found["got"]
    # The waveform parses and holds the design's signals up to the frame.
    vcd = VCDVCD(found["waveform"])
    assert any(name.endswith("o__payload") or "o__payload[" in name for name in vcd.signals)
    assert vcd.endtime > 0
    cases = junit_cases(tmp_path / "j.xml")
    assert cases["rtl_vs_golden[stream]"] is not None
    assert f"First divergent layer: {faulty}" in cases["rtl_vs_golden[stream]"].text
    assert cases["pytorch_vs_golden"] is None


@pytest.mark.slow
def test_corrupted_threshold_in_a_hidden_layer(tmp_path):
    """A threshold fault: the divergence is named at the layer that holds it, even when it is
    not the last one."""
    with pytest.raises(AssertionError, match="First divergent layer: fc") as info:
        assert_bit_exact(EXAMPLE, np.load(TEST_X)[:60], out=tmp_path / "v", fault="threshold",
                         backpressure=False)
    report = json.loads((tmp_path / "v" / "report.json").read_text())
    faulty = report["fault_injected"].split(":")[0].removeprefix("layer ")
    assert report["divergence"]["layer"] == faulty
    assert "not bit-exact" in str(info.value)


@pytest.mark.slow
def test_assert_bit_exact_passes(tmp_path):
    report = assert_bit_exact(EXAMPLE, np.load(TEST_X)[:40], out=tmp_path / "v")
    assert report["status"] == "passed" and report["verification"]["mismatches"] == 0


def test_verify_bad_model_is_exit_2_with_junit(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    run = hwgen("verify", bad, "--out", tmp_path / "v", "--junit", tmp_path / "j.xml")
    assert run.returncode == 2
    cases = junit_cases(tmp_path / "j.xml")
    assert list(cases) == ["build"] and cases["build"] is not None


def _strict(text):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_unknown_board_still_writes_junit_and_json(tmp_path):
    junit = tmp_path / "nested" / "results" / "j.xml"
    run = hwgen("verify", EXAMPLE, "--board", "nosuch", "--junit", junit, "--json")
    assert run.returncode == 2, run.stderr
    assert _strict(run.stdout)["status"] == "failed"
    assert list(junit_cases(junit)) == ["build"]


@pytest.mark.slow
def test_cocotb_env_switches_and_strict_json(tmp_path):
    """WAVES=1 (cocotb's switch) must not change hwgen's simulator builds; with one vector the
    cycle check fails, and --json stays strict JSON (no NaN)."""
    x = tmp_path / "x.npy"
    np.save(x, np.load(TEST_X)[:1])
    env_run = subprocess.run(
        [sys.executable, "-m", "hwgen", "verify", str(EXAMPLE), "--inputs", str(x), "--out",
         str(tmp_path / "v"), "--json"], capture_output=True, text=True, timeout=1800,
        env={**os.environ, "WAVES": "1"})
    assert env_run.returncode == 1, env_run.stderr
    report = _strict(env_run.stdout)
    checks = {c["name"]: c["passed"] for c in report["checks"]}
    assert checks["rtl_vs_golden[stream]"] and not checks["cycles_per_frame"]
