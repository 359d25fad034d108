"""Pad and MaxPool against their golden semantics, their throughput and timing models."""

import itertools

import numpy as np
import pytest
from hwsim import from_beats, random_inputs, simulate, to_beats

from hwgen.compiler import dataflow
from hwgen.hw import max_pool, pad
from hwgen.hw.max_pool import MaxPool
from hwgen.hw.pad import Pad
from hwgen.hw.top import to_verilog
from hwgen.sim import golden

# (h, w, c, lanes, pads, value, bits, signed)
PAD_CASES = [
    (3, 3, 3, 1, (1, 1, 1, 1), 0, 4, True),
    (2, 3, 6, 2, (0, 2, 1, 0), -1, 3, True),
    (3, 2, 4, 4, (2, 0, 0, 1), 5, 3, False),
    (2, 4, 2, 1, (0, 0, 2, 1), 3, 2, False),
    (3, 2, 2, 2, (1, 1, 1, 1), 1, 1, False),
    (2, 2, 3, 3, (1, 2, 0, 1), 0, 1, False),
    (2, 3, 2, 1, (0, 0, 0, 0), -2, 2, True),
]

# (pixels, window, c, lanes, bits, signed)
POOL_CASES = [
    (3, 4, 3, 1, 4, True),
    (2, 9, 6, 2, 3, False),
    (3, 4, 4, 4, 1, False),
    (2, 9, 4, 4, 3, True),
    (4, 4, 6, 3, 2, True),
    (3, 1, 2, 1, 3, True),
]


def make_pad(h, w, c, lanes, pads, value, bits, signed):
    return dataflow.Pad(name="pad", h=h, w=w, c=c, pads=pads, value=value, bits=bits,
                        signed=signed, lanes=lanes)


def make_pool(pixels, window, c, lanes, bits, signed):
    return dataflow.MaxPool(name="pool", pixels=pixels, window=window, c=c, bits=bits,
                            signed=signed, lanes=lanes)


def run(dut, layer, x, **kw):
    lanes, bits = layer.lanes, layer.bits
    beats_out = layer.n_out // lanes
    out, tin, tout = simulate(dut, to_beats(x, lanes, bits), len(x) * beats_out, **kw)
    return from_beats(out, layer.n_out, lanes, bits, layer.signed), tin, tout


def check_throughput(dut, layer, tin, tout, frames):
    """Back to back in, always ready out: a frame every ``layer.cycles``, and the first
    output beat ``latency`` cycles after the first input transfer."""
    firsts = tout[::layer.n_out // layer.lanes]
    assert len(firsts) == frames
    assert [b - a for a, b in itertools.pairwise(firsts)] == [layer.cycles] * (frames - 1)
    assert tout[-1] - tout[0] == frames * layer.cycles - 1  # one beat per cycle at best
    assert tout[0] - tin[0] == dut.latency


@pytest.mark.parametrize("case", PAD_CASES)
def test_pad(case):
    layer = make_pad(*case)
    rng = np.random.default_rng(sum(map(hash, case[:4])) % 997)
    x = random_inputs(rng, 3, layer.n_in, layer.bits, layer.signed)
    expect = golden.pad(layer, x)
    got, _, _ = run(Pad(layer), layer, x, p_gap=0.3, p_stall=0.3, seed=1)
    np.testing.assert_array_equal(got, expect)

    dut = Pad(layer)
    got, tin, tout = run(dut, layer, x)
    np.testing.assert_array_equal(got, expect)
    check_throughput(dut, layer, tin, tout, 3)
    beats_in, beats_out = layer.n_in // layer.lanes, layer.n_out // layer.lanes
    # Input offered from the first cycle: the default time origin is exact.
    assert pad.first_frame_times(layer, tin[:beats_in]) == tout[:beats_out]
    assert pad.first_frame_times(layer, tin[:beats_in], start=0) == tout[:beats_out]


@pytest.mark.parametrize("case", PAD_CASES)
@pytest.mark.parametrize("seed", [5, 6])
def test_pad_first_frame_times(case, seed):
    layer = make_pad(*case)
    x = random_inputs(np.random.default_rng(seed), 1, layer.n_in, layer.bits, layer.signed)
    _, tin, tout = run(Pad(layer), layer, x, p_gap=0.4, seed=seed)
    # The simulation's first cycle is the block's first idle cycle.
    assert pad.first_frame_times(layer, tin, start=0) == tout


@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool(case):
    layer = make_pool(*case)
    rng = np.random.default_rng(sum(map(hash, case[:4])) % 997)
    x = random_inputs(rng, 3, layer.n_in, layer.bits, layer.signed)
    expect = golden.max_pool(layer, x)
    got, _, _ = run(MaxPool(layer), layer, x, p_gap=0.3, p_stall=0.3, seed=2)
    np.testing.assert_array_equal(got, expect)

    dut = MaxPool(layer)
    got, tin, tout = run(dut, layer, x)
    np.testing.assert_array_equal(got, expect)
    assert tin == list(range(len(tin)))  # never refuses back-to-back input
    check_throughput_pool(dut, layer, tin, tout, 3)
    beats_in = layer.n_in // layer.lanes
    assert max_pool.first_frame_times(layer, tin[:beats_in]) == \
        tout[:layer.n_out // layer.lanes]


def check_throughput_pool(dut, layer, tin, tout, frames):
    firsts = tout[::layer.n_out // layer.lanes]
    assert [b - a for a, b in itertools.pairwise(firsts)] == [layer.cycles] * (frames - 1)
    assert tout[0] - tin[0] == dut.latency


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("seed", [7, 8])
def test_max_pool_first_frame_times(case, seed):
    layer = make_pool(*case)
    x = random_inputs(np.random.default_rng(seed), 1, layer.n_in, layer.bits, layer.signed)
    _, tin, tout = run(MaxPool(layer), layer, x, p_gap=0.4, seed=seed)
    assert max_pool.first_frame_times(layer, tin) == tout


def test_max_pool_keeps_taking_input_while_output_stalls():
    """Only a window's last pixel waits for room in the output buffer."""
    layer = make_pool(2, 4, 2, 1, 3, True)
    x = random_inputs(np.random.default_rng(0), 1, layer.n_in, 3, True)
    got, tin, _ = run(MaxPool(layer), layer, x, p_stall=0.9, seed=3)
    np.testing.assert_array_equal(got, golden.max_pool(layer, x))
    assert tin[:6] == list(range(6))


def unused(block):
    block._MustUse__silence = True  # built only to ask for a property
    return block


def test_latency_formulas():
    layer = make_pad(3, 4, 6, 2, (2, 1, 0, 0), 0, 2, False)  # out_w = 5, 3 beats per pixel
    assert unused(Pad(layer)).latency == 1 - (2 * 5 + 1) * 3
    assert unused(Pad(make_pad(3, 4, 6, 2, (0, 0, 1, 1), 0, 2, False))).latency == 1
    assert unused(MaxPool(make_pool(2, 9, 6, 2, 3, False))).latency == 8 * 3 + 1
    assert unused(MaxPool(make_pool(2, 1, 6, 3, 3, False))).latency == 1


def test_validation():
    pool = make_pool(2, 4, 4, 2, 3, True)
    pad_layer = make_pad(2, 2, 4, 2, (1, 1, 1, 1), 0, 3, True)
    with pytest.raises(TypeError, match=r"dataflow\.Pad"):
        Pad(pool)
    with pytest.raises(TypeError, match=r"dataflow\.MaxPool"):
        MaxPool(pad_layer)
    with pytest.raises(ValueError, match="lanes=4 must divide the 6 channels"):
        Pad(make_pad(2, 2, 6, 4, (1, 1, 1, 1), 0, 3, True))
    with pytest.raises(ValueError, match="lanes=4 must divide the 6 channels"):
        pad.memory_shapes(make_pad(2, 2, 6, 4, (1, 1, 1, 1), 0, 3, True))
    with pytest.raises(ValueError, match="lanes=4 must divide the 6 channels"):
        make_pool(2, 4, 6, 4, 3, True)
    bad = make_pool(2, 4, 6, 3, 3, True)
    bad.lanes = 4  # changed after construction: the component checks again
    with pytest.raises(ValueError, match="lanes=4 must divide the 6 channels"):
        MaxPool(bad)
    with pytest.raises(ValueError, match="lanes=4 must divide the 6 channels"):
        max_pool.memory_shapes(bad)
    bad = make_pad(2, 2, 4, 2, (1, 1, 1, 1), 0, 3, True)
    bad.value = 4
    with pytest.raises(ValueError, match="pad value 4 does not fit the 3-bit signed"):
        Pad(bad)
    bad = make_pad(2, 2, 4, 2, (1, 1, 1, 1), 0, 3, True)
    bad.pads = (1, -1, 1, 1)
    with pytest.raises(ValueError, match=r"pads=\(1, -1, 1, 1\)"):
        Pad(bad)
    with pytest.raises(ValueError, match="3 arrival times for a frame of 8 input beats"):
        pad.first_frame_times(pad_layer, [0, 1, 2])
    with pytest.raises(ValueError, match="3 arrival times for a frame of 16 input beats"):
        max_pool.first_frame_times(pool, [0, 1, 2])
    assert pad.memory_shapes(pad_layer) == [] == unused(Pad(pad_layer)).memory_shapes
    assert max_pool.memory_shapes(pool) == [] == unused(MaxPool(pool)).memory_shapes


@pytest.mark.parametrize("block", [
    lambda: Pad(make_pad(2, 3, 1, 1, (0, 0, 0, 0), 0, 1, False)),
    lambda: Pad(make_pad(2, 3, 6, 2, (0, 2, 1, 0), -1, 3, True)),
    lambda: MaxPool(make_pool(2, 1, 1, 1, 1, False)),
    lambda: MaxPool(make_pool(2, 9, 6, 2, 3, True)),
])
def test_converts_to_verilog(block):
    assert "module top" in to_verilog(block(), "top")
