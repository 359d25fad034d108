"""SlidingWindow against its golden semantics, its throughput, latency and first-frame
schedule."""

import itertools

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator
from hwsim import from_beats, random_inputs, simulate, to_beats

from hwgen.compiler import dataflow, memory
from hwgen.hw import sliding_window
from hwgen.hw.sliding_window import SlidingWindow, first_frame_taken, first_frame_times
from hwgen.sim import golden


def make_layer(h, w, c, lanes, kernel, stride, bits=3, signed=True, **kw):
    return dataflow.SlidingWindow(name="sw", h=h, w=w, c=c, kernel=kernel, stride=stride,
                                  bits=bits, signed=signed, lanes=lanes, **kw)


def unbuilt(layer):
    """The component, only asked for its numbers (never elaborated)."""
    dut = SlidingWindow(layer)
    dut._MustUse__silence = True
    return dut


def run(layer, frames, seed=0, **kw):
    """Simulate ``frames`` random frames; check the output against the golden model and
    return ``(dut, in_times, out_times, output beats per frame)``."""
    rng = np.random.default_rng(seed)
    x = random_inputs(rng, frames, layer.n_in, layer.bits, layer.signed)
    dut = SlidingWindow(layer)
    beats_out = layer.n_out // layer.lanes
    out, tin, tout = simulate(dut, to_beats(x, layer.lanes, layer.bits), frames * beats_out,
                              seed=seed, **kw)
    got = from_beats(out, layer.n_out, layer.lanes, layer.bits, layer.signed)
    np.testing.assert_array_equal(got, golden.sliding_window(layer, x))
    return dut, tin, tout, beats_out


def case_id(h, w, c, lanes, kernel, stride):
    return f"{h}x{w}x{c}l{lanes}-k{kernel[0]}x{kernel[1]}-s{stride[0]}x{stride[1]}"


# (h, w, c, lanes, kernel, stride)
CASES = [
    (5, 5, 2, 2, (3, 3), (1, 1)),   # 3x3 stride 1
    (6, 6, 1, 1, (5, 5), (1, 1)),   # 5x5 kernel
    (6, 6, 2, 1, (2, 2), (2, 2)),   # stride 2
    (5, 7, 1, 1, (3, 3), (1, 1)),   # non-square map
    (5, 7, 6, 2, (3, 2), (2, 1)),   # non-square kernel and stride, 3 beats per pixel
    (4, 4, 4, 4, (3, 3), (1, 1)),   # a pixel per beat
    (5, 4, 3, 1, (2, 3), (1, 2)),   # a channel per beat
    (4, 5, 2, 1, (4, 5), (1, 1)),   # the kernel is the whole map: one window
    (8, 8, 1, 1, (3, 3), (2, 2)),   # the last row and column are dropped
    (4, 3, 2, 2, (1, 1), (1, 1)),   # 1x1 kernel
    (6, 6, 1, 1, (1, 1), (2, 2)),   # 1x1 stride 2: rows and columns between windows
    (7, 7, 2, 1, (2, 2), (3, 3)),   # stride past the kernel
    (5, 6, 1, 1, (1, 5), (2, 1)),   # rows between windows, input and output balanced
    (11, 5, 1, 1, (3, 3), (3, 2)),  # rows dropped at the end, balanced
    (3, 3, 2, 1, (3, 3), (1, 1)),   # tiny: the writer gets 2 frames ahead
    (5, 2, 1, 1, (1, 1), (4, 1)),   # tiny: up to 3 frames ahead
    (2, 2, 1, 1, (1, 1), (1, 1)),
    (1, 1, 3, 1, (1, 1), (1, 1)),   # a single pixel
]
CASE_IDS = [case_id(*case) for case in CASES]


@pytest.mark.parametrize("h,w,c,lanes,kernel,stride", CASES, ids=CASE_IDS)
def test_sliding_window(h, w, c, lanes, kernel, stride):
    layer = make_layer(h, w, c, lanes, kernel, stride)
    frames = 5 if h * w > 20 else 8
    for seed, (p_gap, p_stall) in enumerate([(0.3, 0.3), (0.1, 0.6), (0.6, 0.1)]):
        run(layer, frames, seed=seed, p_gap=p_gap, p_stall=p_stall)


@pytest.mark.parametrize("bits,signed", [(1, False), (8, True)])
def test_sliding_window_widths(bits, signed):
    layer = make_layer(4, 4, 4, 2, (2, 2), (1, 1), bits=bits, signed=signed)
    run(layer, 4, p_gap=0.3, p_stall=0.3)


# Output bound, balanced, input bound (rows and columns skipped), whole map, rows dropped.
TIMING = [
    (6, 6, 2, 1, (3, 3), (1, 1)),
    (5, 7, 6, 2, (3, 2), (2, 1)),
    (8, 8, 1, 1, (2, 2), (2, 2)),
    (6, 6, 1, 1, (1, 1), (2, 2)),
    (3, 3, 2, 1, (3, 3), (1, 1)),
    (11, 5, 1, 1, (3, 3), (3, 2)),
    (5, 6, 1, 1, (1, 5), (2, 1)),
]


@pytest.mark.parametrize("h,w,c,lanes,kernel,stride", TIMING,
                         ids=[case_id(*case) for case in TIMING])
def test_sliding_window_timing(h, w, c, lanes, kernel, stride):
    """Input back to back, output always ready: ``layer.cycles`` between frames from the
    second frame on, and ``latency`` to the first output beat."""
    layer = make_layer(h, w, c, lanes, kernel, stride)
    frames = 5
    dut, tin, tout, beats_out = run(layer, frames)
    firsts = tout[::beats_out]
    gaps = [b - a for a, b in itertools.pairwise(firsts)]
    assert gaps[1:] == [layer.cycles] * (frames - 2), gaps
    assert tout[0] - tin[0] == dut.latency
    (kh, kw), groups = layer.kernel, c // lanes
    assert dut.latency == ((kh - 1) * w + kw) * groups + 2


@pytest.mark.parametrize("h,w,c,lanes,kernel,stride", CASES, ids=CASE_IDS)
def test_first_frame_times(h, w, c, lanes, kernel, stride):
    """The first frame's output schedule from its input transfers, with random input gaps."""
    layer = make_layer(h, w, c, lanes, kernel, stride)
    beats_in = h * w * (c // lanes)
    for seed, p_gap in enumerate([0.0, 0.3, 0.7]):
        _, tin, tout, beats_out = run(layer, 3, seed=seed, p_gap=p_gap)
        assert first_frame_times(layer, tin[:beats_in]) == tout[:beats_out]
        assert first_frame_taken(layer, tin[:beats_in]) == tin[:beats_in]
    assert first_frame_times(layer, range(5, 5 + beats_in))[0] == \
        5 + unbuilt(layer).latency


@pytest.mark.parametrize("h,w,c,lanes,kernel,stride", [
    (8, 6, 1, 1, (3, 3), (1, 1)),
    (9, 5, 2, 1, (3, 2), (2, 1)),
    (7, 4, 1, 1, (2, 4), (1, 1)),
])
def test_first_frame_back_pressure(h, w, c, lanes, kernel, stride):
    """An output-bound layer refuses input while its line buffer is full: offered back to
    back, the first frame's beats are taken later, as :func:`first_frame_taken` says."""
    layer = make_layer(h, w, c, lanes, kernel, stride)
    _, tin, tout, beats_out = run(layer, 2)
    beats_in = h * w * (c // lanes)
    assert tin[beats_in - 1] > beats_in - 1  # input was refused in the first frame
    assert first_frame_taken(layer, range(beats_in)) == tin[:beats_in]
    assert first_frame_times(layer, range(beats_in)) == tout[:beats_out]
    assert first_frame_times(layer, tin[:beats_in]) == tout[:beats_out]


def test_first_frame_arrivals():
    layer = make_layer(4, 4, 1, 1, (3, 3), (1, 1))
    with pytest.raises(ValueError, match="4 arrival times for a frame of 16"):
        first_frame_times(layer, range(4))
    # Beats offered together are taken one per cycle.
    assert first_frame_taken(layer, [3] * 16) == list(range(3, 19))


@pytest.mark.parametrize("h,w,c,kernel,stride,ahead", [
    (3, 3, 1, (3, 3), (1, 1), 2),
    (5, 2, 1, (1, 1), (4, 1), 3),
])
def test_writer_frames_ahead(h, w, c, kernel, stride, ahead):
    """On tiny maps with a slow output the writer completes frames the reader has not
    finished: ``ahead`` frames ahead (the most its counter holds), at least by the input and
    output transfers."""
    layer = make_layer(h, w, c, 1, kernel, stride)
    _, tin, tout, beats_out = run(layer, 8, p_stall=0.9)
    beats_in = h * w * c
    ends = tin[beats_in - 1::beats_in]
    most = 0
    for t in tin:
        done_in = sum(e <= t for e in ends)
        # At most 3 beats between a read and its transfer (read register, output buffer).
        issued = (sum(u <= t for u in tout) + 3) // beats_out
        most = max(most, done_in - issued)
    assert most >= ahead


def test_ready_does_not_see_output_ready():
    """``i.ready`` never depends on ``o.ready`` in the same cycle."""
    layer = make_layer(4, 5, 2, 1, (3, 2), (1, 1))
    dut = SlidingWindow(layer)
    rng = np.random.default_rng(7)
    seen = set()

    async def bench(ctx):
        for _ in range(400):
            ctx.set(dut.i.valid, int(rng.random() < 0.7))
            ctx.set(dut.i.payload, int(rng.integers(0, 8)))
            readies = []
            for ready in (0, 1):
                ctx.set(dut.o.ready, ready)
                readies.append(ctx.get(dut.i.ready))
            assert readies[0] == readies[1]
            seen.add(readies[0])
            ctx.set(dut.o.ready, int(rng.random() < 0.3))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == {0, 1}


def test_memory():
    layer = make_layer(5, 7, 6, 2, (3, 2), (2, 1), bits=4)
    rows = layer.buffer_rows
    assert sliding_window.memory_shapes(layer) == [("line_buffer", 8, rows * 7 * 3)]
    assert unbuilt(layer).memory_shapes == sliding_window.memory_shapes(layer)
    # The memory's ram_style is the plan's.
    for style in ("block", "logic"):
        layer = make_layer(4, 4, 2, 1, (3, 3), (1, 1), styles={"line_buffer": style})
        assert memory.plan(layer)[0].style == style
        text = rtlil.convert(SlidingWindow(layer))
        assert f'attribute \\ram_style "{style}"' in text


def test_validation():
    with pytest.raises(TypeError, match=r"dataflow\.SlidingWindow"):
        SlidingWindow(dataflow.FIFO(name="q", n=4, bits=4, signed=False, lanes=1, depth=2))
    layer = make_layer(4, 4, 6, 2, (3, 3), (1, 1))
    layer.lanes = 4
    with pytest.raises(ValueError, match="lanes=4 must divide the 6 channels"):
        SlidingWindow(layer)
    with pytest.raises(ValueError, match="lanes=4 must divide"):
        sliding_window.memory_shapes(layer)
    layer = make_layer(4, 4, 2, 1, (3, 3), (1, 1))
    layer.kernel = (5, 3)
    with pytest.raises(ValueError, match="5x3 window does not fit a 4x4 map"):
        SlidingWindow(layer)
    layer.kernel = (3, 0)
    with pytest.raises(ValueError, match=r"kernel=\(3, 0\) must be two positive integers"):
        SlidingWindow(layer)
    layer = make_layer(4, 4, 2, 1, (3, 3), (1, 1))
    layer.h = 0
    with pytest.raises(ValueError, match="h=0"):
        SlidingWindow(layer)
    layer = make_layer(4, 4, 2, 1, (3, 3), (1, 1), styles={"line_buffer": "spram"})
    with pytest.raises(ValueError, match="SPRAM"):
        SlidingWindow(layer)
