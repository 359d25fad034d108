"""LabelSelect, WidthConverter and FIFO against their golden semantics."""

import itertools

import numpy as np
import pytest
from hwsim import from_beats, random_inputs, simulate, to_beats

from hwgen.compiler import dataflow
from hwgen.hw import fifo, label_select, width_converter
from hwgen.hw.fifo import FIFO
from hwgen.hw.label_select import LabelSelect
from hwgen.hw.width_converter import WidthConverter
from hwgen.sim import golden


def run_block(dut, layer, x, lanes_in, lanes_out, n_out, out_bits, out_signed, **kw):
    beats_out = -(-n_out // lanes_out)
    # A FIFO passes padding lanes through, so it gets the zero padding producers drive.
    beats = to_beats(x, lanes_in, layer.in_bits, junk=not isinstance(dut, FIFO))
    out, tin, tout = simulate(dut, beats, len(x) * beats_out, **kw)
    return from_beats(out, n_out, lanes_out, out_bits, out_signed), tin, tout


def check_timing(dut, layer, tin, tout, frames, beats_out):
    firsts = tout[::beats_out]
    assert [b - a for a, b in itertools.pairwise(firsts)] == \
        [layer.cycles] * (frames - 1)
    assert tout[0] - tin[0] == dut.latency


LABEL_CASES = [(10, 1, 4, True), (10, 3, 5, True), (10, 10, 6, False), (7, 4, 3, False),
               (2, 2, 1, False), (16, 5, 4, True)]


@pytest.mark.parametrize("n,lanes,bits,signed", LABEL_CASES)
def test_label_select(n, lanes, bits, signed):
    rng = np.random.default_rng(n * 100 + lanes)
    layer = dataflow.LabelSelect(name="ls", n=n, in_bits=bits, in_signed=signed, lanes=lanes)
    frames = 12
    # Few distinct values so that ties are common.
    x = random_inputs(rng, frames, n, 2, signed) if bits > 2 else \
        random_inputs(rng, frames, n, bits, signed)
    expect = golden.label_select(layer, x)
    got, _, _ = run_block(LabelSelect(layer), layer, x, lanes, 1, 1, layer.out_bits, False,
                          p_gap=0.3, p_stall=0.4, seed=2)
    np.testing.assert_array_equal(got, expect)
    dut = LabelSelect(layer)
    got, tin, tout = run_block(dut, layer, x[:5], lanes, 1, 1, layer.out_bits, False)
    np.testing.assert_array_equal(got, expect[:5])
    check_timing(dut, layer, tin, tout, 5, 1)


WC_CASES = [(16, 4, 8), (16, 8, 4), (7, 5, 3), (7, 3, 5), (9, 1, 4), (9, 4, 1), (10, 3, 3),
            (6, 6, 4), (5, 2, 7)]


@pytest.mark.parametrize("n,li,lo", WC_CASES)
def test_width_converter(n, li, lo):
    rng = np.random.default_rng(n * 100 + li * 10 + lo)
    layer = dataflow.WidthConverter(name="wc", n=n, bits=3, signed=True, lanes_in=li,
                                    lanes_out=lo)
    x = random_inputs(rng, 6, n, 3, True)
    got, _, _ = run_block(WidthConverter(layer), layer, x, li, lo, n, 3, True, p_gap=0.3,
                          p_stall=0.4, seed=3)
    np.testing.assert_array_equal(got, x)
    dut = WidthConverter(layer)
    got, tin, tout = run_block(dut, layer, x, li, lo, n, 3, True)
    np.testing.assert_array_equal(got, x)
    check_timing(dut, layer, tin, tout, 6, -(-n // lo))


@pytest.mark.parametrize("n,li,lo", [(12, 3, 5), (7, 3, 5), (9, 1, 4), (16, 4, 8), (5, 2, 7)])
def test_width_converter_never_refuses_back_to_back_input(n, li, lo):
    """With lanes_in <= lanes_out and the output always ready, an input beat every cycle is
    taken every cycle (the schedule the latency model assumes), within and across frames."""
    layer = dataflow.WidthConverter(name="wc", n=n, bits=2, signed=False, lanes_in=li,
                                    lanes_out=lo)
    x = random_inputs(np.random.default_rng(n), 4, n, 2, False)
    _, tin, _ = run_block(WidthConverter(layer), layer, x, li, lo, n, 2, False)
    assert tin == list(range(tin[0], tin[0] + len(tin)))


@pytest.mark.parametrize("depth", [1, 2, 3, 6])
def test_fifo(depth):
    rng = np.random.default_rng(depth)
    layer = dataflow.FIFO(name="q", n=10, bits=4, signed=False, lanes=3, depth=depth)
    x = random_inputs(rng, 6, 10, 4, False)
    got, _, _ = run_block(FIFO(layer), layer, x, 3, 3, 10, 4, False, p_gap=0.3, p_stall=0.5,
                          seed=4)
    np.testing.assert_array_equal(got, x)
    dut = FIFO(layer)
    got, tin, tout = run_block(dut, layer, x, 3, 3, 10, 4, False)
    np.testing.assert_array_equal(got, x)
    check_timing(dut, layer, tin, tout, 6, 4)
    assert fifo.memory_shapes(layer) == ([("fifo", 12, depth - 1)] if depth > 2 else [])


def test_block_validation():
    with pytest.raises(TypeError, match=r"dataflow\.LabelSelect"):
        LabelSelect(dataflow.FIFO(name="q", n=4, bits=4, signed=False, lanes=1, depth=2))
    with pytest.raises(ValueError, match="lanes=5"):
        LabelSelect(dataflow.LabelSelect(name="ls", n=4, in_bits=4, in_signed=False, lanes=5))
    with pytest.raises(ValueError, match="depth=0"):
        FIFO(dataflow.FIFO(name="q", n=4, bits=4, signed=False, lanes=1, depth=0))
    with pytest.raises(ValueError, match="lanes_out=0"):
        WidthConverter(dataflow.WidthConverter(name="wc", n=4, bits=2, signed=False,
                                               lanes_in=2, lanes_out=0))
    layer = dataflow.LabelSelect(name="ls", n=4, in_bits=4, in_signed=False, lanes=2)
    assert label_select.memory_shapes(layer) == []
    layer = dataflow.WidthConverter(name="wc", n=4, bits=2, signed=False, lanes_in=2,
                                    lanes_out=4)
    assert width_converter.memory_shapes(layer) == []
