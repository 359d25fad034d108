"""The stitched Accelerator against hwgen.sim.golden.run."""

import itertools
import math

import numpy as np
import pytest
from hwsim import from_beats, make_mvau, random_inputs, simulate, to_beats

from hwgen.compiler import dataflow
from hwgen.hw.top import Accelerator, memory_shapes, verilog
from hwgen.sim import golden


def make_graph(variant="plain", seed=0):
    """fc1 -> [WidthConverter -> FIFO | FIFO] -> fc2 -> argmax."""
    rng = np.random.default_rng(seed)
    l1 = make_mvau(rng, 8, 12, pe=2, simd=4, in_bits=3, out_bits=2, name="fc1")
    layers = [l1]
    simd2 = 2
    if variant == "fifo":
        layers.append(dataflow.FIFO(name="q", n=8, bits=2, signed=False, lanes=2, depth=4))
    if variant == "converter":
        simd2 = 4
        layers += [dataflow.WidthConverter(name="wc", n=8, bits=2, signed=False, lanes_in=2,
                                           lanes_out=4),
                   dataflow.FIFO(name="q", n=8, bits=2, signed=False, lanes=4, depth=4)]
    l2 = make_mvau(rng, 5, 8, pe=1, simd=simd2, in_bits=2, mode="bias", name="fc2")
    layers += [l2, dataflow.LabelSelect(name="argmax", n=5, in_bits=l2.out_bits,
                                        in_signed=l2.out_signed, lanes=1)]
    quant = dataflow.InputQuant(shape=(12,), bits=3, signed=False, narrow=False, scale=1.0)
    return dataflow.Dataflow(name="net", input=quant, layers=layers)


def run(graph, x, lasts=None, **kw):
    first = graph.layers[0]
    beats = to_beats(x, first.lanes_in, first.in_bits)
    per = math.ceil(first.n_in / first.lanes_in)
    lasts = lasts or [k % per == per - 1 for k in range(len(beats))]
    dut = Accelerator(graph)
    state = {}
    last = graph.layers[-1]
    out, tin, tout = simulate(
        dut, beats, len(x) * math.ceil(last.n_out / last.lanes_out),
        make_payload=lambda k, beat: {"data": beat, "last": int(lasts[k])},
        read_payload=lambda v: (v.data, v.last),
        extra=lambda ctx: state.setdefault("frame_error", ctx.get(dut.frame_error)), **kw)
    return dut, out, tin, tout, state["frame_error"]


@pytest.mark.parametrize("variant", ["plain", "fifo", "converter"])
def test_accelerator(variant):
    graph = make_graph(variant)
    rng = np.random.default_rng(1)
    x = random_inputs(rng, 8, 12, 3, False)
    expect = golden.run(graph, x)
    _, out, _, _, error = run(graph, x, p_gap=0.3, p_stall=0.4, seed=5)
    assert error == 0
    assert all(last == 1 for _, last in out)
    np.testing.assert_array_equal(from_beats([d for d, _ in out], 1, 1, 3, False), expect)
    _, out, _, tout, _ = run(graph, x[:5])
    np.testing.assert_array_equal(from_beats([d for d, _ in out], 1, 1, 3, False),
                                  expect[:5])
    # Without gaps the slowest layer sets the pace, once a FIFO lets fc1 run ahead while fc2
    # works on folds that take no input (fc2 reads its whole input during neuron fold 0).
    period = [b - a for a, b in itertools.pairwise(tout)]
    if variant == "plain":
        assert all(p > graph.cycles_per_frame for p in period)
    else:
        assert period == [graph.cycles_per_frame] * 4


def test_accelerator_logits_last():
    graph = make_graph("fifo")
    graph.layers.pop()  # integer logits out: 5 beats per frame
    fc2 = graph.layers[-1]
    x = random_inputs(np.random.default_rng(3), 4, 12, 3, False)
    _, out, _, _, error = run(graph, x, p_gap=0.2, p_stall=0.3, seed=6)
    assert error == 0
    assert [last for _, last in out] == [0, 0, 0, 0, 1] * 4
    np.testing.assert_array_equal(
        from_beats([d for d, _ in out], 5, 1, fc2.out_bits, fc2.out_signed),
        golden.run(graph, x))


def test_accelerator_frame_error():
    graph = make_graph()
    x = random_inputs(np.random.default_rng(2), 2, 12, 3, False)
    _, _, _, _, error = run(graph, x, lasts=[0, 0, 1, 0, 1, 0])
    assert error == 1


def test_accelerator_rejects_lane_mismatch():
    graph = make_graph()
    graph.layers.insert(1, dataflow.FIFO(name="q", n=8, bits=2, signed=False, lanes=4,
                                         depth=4))
    with pytest.raises(ValueError, match="insert a WidthConverter"):
        Accelerator(graph)


def test_verilog_ports_and_memories():
    graph = make_graph("converter")
    text = verilog(graph, name="accel")
    assert "module accel(" in text
    for port in ("clk", "rst", "i__valid", "i__ready", "i__payload", "o__valid", "o__ready",
                 "o__payload", "frame_error"):
        assert f" {port}" in text
    shapes = memory_shapes(graph)
    assert [(name, purpose) for name, purpose, _, _ in shapes] == [
        ("fc1", "weights"), ("fc1", "input_buffer"), ("fc1", "thresholds[0]"),
        ("fc1", "thresholds[1]"), ("q", "fifo"), ("fc2", "weights"), ("fc2", "input_buffer")]
    assert shapes[0][2:] == (2 * 4 * 3, 4 * 3)
