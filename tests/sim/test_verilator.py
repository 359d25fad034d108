"""The Verilator runner on a small Amaranth top with known outputs, cycle counts and latency."""

import numpy as np
import pytest
from frame_top import FrameSum, Stuck

from hwgen.sim.verilator import (
    SimulationTimeout,
    VerilatorBuildError,
    simulate,
)

# Wider than 64 bits on both sides, to exercise wide beats through the harness.
IN_W, OUT_W, BEATS_IN, BEATS_OUT, EXTRA = 66, 72, 10, 2, 3
CYCLES_PER_FRAME = BEATS_IN + EXTRA + BEATS_OUT
LATENCY = BEATS_IN + EXTRA


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("hwgen-cache")


@pytest.fixture(scope="module")
def design():
    d = FrameSum(IN_W, OUT_W, BEATS_IN, BEATS_OUT, EXTRA)
    return d, d.to_verilog("frame_sum")


def _inputs(frames, seed, width=IN_W, beats=BEATS_IN):
    rng = np.random.default_rng(seed)
    top = (1 << width) - 1
    vals = [[int(x) for x in rng.integers(0, 1 << (width - 4), beats, dtype=np.uint64)]
            for _ in range(frames)]
    arr = np.array(vals, dtype=object) * 9  # beyond 64 bits for IN_W=66
    arr[0, 0] = top  # all ones, including the top bit
    return arr


def _run(design, cache, inputs, **kw):
    d, v = design
    return simulate(v, top="frame_sum", in_width=d.in_width, out_width=d.out_width,
                    inputs=inputs, beats_out=d.beats_out, cache_dir=cache, **kw)


@pytest.fixture(scope="module")
def first_run(design, cache):
    inputs = _inputs(300, seed=1)
    return inputs, _run(design, cache, inputs, seed=7)


def test_outputs_exact_in_both_phases(design, first_run):
    inputs, res = first_run
    assert set(res) == {"stream", "backpressure"}
    expected = design[0].expected(inputs)
    for r in res.values():
        assert r.outputs.shape == (300, BEATS_OUT)
        assert r.outputs.tolist() == expected.tolist()
        assert r.last_ok
        assert not r.frame_error
        assert len(r.frame_in_cycles) == len(r.frame_out_cycles) == 300
    walls = [r.wall_s for r in res.values()]
    assert all(w > 0 for w in walls)
    assert res["stream"].run_wall_s >= sum(walls)


def test_cycle_counts_match_the_design(first_run):
    _, res = first_run
    s = res["stream"]
    assert s.cycles_per_frame == CYCLES_PER_FRAME
    assert s.latency == LATENCY
    assert s.stall_fraction == 0.0
    frames = np.arange(300)
    assert (s.frame_in_cycles == frames * CYCLES_PER_FRAME).all()
    assert (s.frame_out_cycles == frames * CYCLES_PER_FRAME + CYCLES_PER_FRAME - 1).all()
    assert s.cycles == 300 * CYCLES_PER_FRAME


def test_backpressure_stalls_at_least_a_quarter(first_run):
    _, res = first_run
    b = res["backpressure"]
    assert 0.25 <= b.stall_fraction <= 0.45
    # Output stalls slow this one-frame-at-a-time design down, never speed it up.
    assert b.cycles > res["stream"].cycles
    assert b.cycles_per_frame >= CYCLES_PER_FRAME
    assert b.latency >= LATENCY


def test_seed_changes_pattern_deterministically(design, cache, first_run):
    inputs, res = first_run
    # The pattern depends on the seed and the phase's position.
    phases = [("s", False), ("bp", True)]
    again = _run(design, cache, inputs, seed=7, phases=phases)["bp"]
    other = _run(design, cache, inputs, seed=8, phases=phases)["bp"]
    assert again.cycles == res["backpressure"].cycles
    assert (again.frame_out_cycles == res["backpressure"].frame_out_cycles).all()
    assert other.cycles != again.cycles
    assert other.outputs.tolist() == again.outputs.tolist()


def test_cached_model_is_reused(design, cache, first_run):
    _, res = first_run
    assert res["stream"].built  # the first run compiled the model ...
    inputs = _inputs(37, seed=2)  # ... a different vector set reuses it
    again = _run(design, cache, inputs, phases=[("only", False)])
    assert not again["only"].built
    assert again["only"].outputs.tolist() == design[0].expected(inputs).tolist()
    assert len(list(cache.glob("*/hwgen-build.ok"))) == 1


def test_misaligned_input_last_sets_frame_error(design, cache):
    inputs = _inputs(8, seed=3)
    last = np.zeros(inputs.shape, dtype=bool)
    last[:, -1] = True
    last[5, -1], last[5, 4] = False, True
    res = _run(design, cache, inputs, in_last=last, phases=[("s", False)])["s"]
    assert res.frame_error
    assert res.last_ok


def test_output_last_misalignment_detected(design, cache):
    # Claim one output beat per frame while the design sends two: `last` lands on every
    # second beat only.
    _, v = design
    inputs = _inputs(4, seed=4)
    res = simulate(v, top="frame_sum", in_width=IN_W, out_width=OUT_W, inputs=inputs,
                   beats_out=1, cache_dir=cache, phases=[("s", False)])["s"]
    assert not res.last_ok
    assert res.outputs.shape == (4, 1)


def test_deadlock_times_out_naming_phase_and_frame(cache):
    d = Stuck(8, 8, 2, 1, 0)
    with pytest.raises(SimulationTimeout, match=r"phase 'stream'.*frame 0 "):
        simulate(d.to_verilog("stuck"), top="stuck", in_width=8, out_width=8,
                 inputs=np.ones((3, 2), dtype=np.uint64), beats_out=1, timeout=500,
                 cache_dir=cache)


def test_verilog_syntax_error_reports_build_log(cache):
    bad = "module broken(input wire clk);\n  wire x = ;\nendmodule\n"
    with pytest.raises(VerilatorBuildError, match=r"(?s)failed.*broken|syntax") as info:
        simulate(bad, top="broken", in_width=8, out_width=8,
                 inputs=np.zeros((1, 1), dtype=np.uint64), beats_out=1, cache_dir=cache)
    assert "%Error" in str(info.value)
    assert not list(cache.glob("*/hwgen-build.ok")) or all(
        "broken" not in p.parent.joinpath("dut.v").read_text()
        for p in cache.glob("*/hwgen-build.ok"))


def test_argument_errors(design, cache):
    _, v = design
    with pytest.raises(ValueError, match="does not fit in 66"):
        _run(design, cache, np.array([[1 << 66] * BEATS_IN], dtype=object))
    with pytest.raises(ValueError, match="beats_out"):
        simulate(v, top="frame_sum", in_width=IN_W, out_width=OUT_W,
                 inputs=_inputs(1, 0), beats_out=0, cache_dir=cache)
    with pytest.raises(ValueError, match="phases"):
        _run(design, cache, _inputs(1, 0), phases=[("a", False), ("a", True)])
    with pytest.raises(ValueError, match="stall_prob"):
        _run(design, cache, _inputs(1, 0), stall_prob=1.0)


def test_mlp_scale_run_is_fast(cache):
    # The size of the digits MLP verification: 1797 frames of 10 beats at ~150 cycles each,
    # both phases, including building the model.
    import time

    d = FrameSum(64, 4, 10, 1, 140)
    inputs = _inputs(1797, seed=5, width=64)
    t0 = time.perf_counter()
    res = simulate(d.to_verilog("mlp_like"), top="mlp_like", in_width=64, out_width=4,
                   inputs=inputs, beats_out=1, cache_dir=cache)
    wall = time.perf_counter() - t0
    expected = d.expected(inputs).astype(np.uint64)
    for r in res.values():
        assert (r.outputs == expected).all()
        assert r.last_ok
    assert res["stream"].cycles_per_frame == 151
    assert res["backpressure"].stall_fraction >= 0.25
    assert wall < 60


def test_cache_key_names_the_installation():
    # A model links cocotb's library by absolute path: one built from another virtual
    # environment (perhaps deleted since) must not be reused.
    from pathlib import Path

    import cocotb

    from hwgen.sim.verilator import _tool_versions

    assert str(Path(cocotb.__file__).parent) in _tool_versions()
