"""MVAU against hwgen.sim.golden.mvau in Amaranth's simulator."""

import itertools
import zlib

import numpy as np
import pytest
from hwsim import acc_range, from_beats, make_mvau, random_inputs, simulate, to_beats

from hwgen.compiler.dataflow import MVAU as MVAULayer
from hwgen.compiler.dataflow import bits_for_range
from hwgen.hw.mvau import MVAU, _weight_coding, memory_shapes, threshold_heap
from hwgen.sim import golden

CASES = {
    # name: (mh, mw, keyword arguments of make_mvau)
    "thresholds-unsigned": (10, 13, {"pe": 4, "simd": 5, "out_bits": 2}),
    "thresholds-signed-out": (6, 9, {"pe": 2, "simd": 3, "out_bits": 3, "out_signed": True,
                                         "in_signed": True}),
    "thresholds-pe-eq-mh": (5, 4, {"pe": 5, "simd": 2, "out_bits": 3, "out_signed": True}),
    "bias-logits": (10, 13, {"pe": 4, "simd": 5, "mode": "bias", "in_signed": True}),
    "logits-unsigned-weights": (6, 8, {"pe": 3, "simd": 4, "mode": "logits",
                                           "weight_signed": False}),
    "pe1-simd1": (3, 4, {"pe": 1, "simd": 1, "out_bits": 2}),
    "nf1": (4, 12, {"pe": 4, "simd": 4, "out_bits": 2}),
    "sf-lt-steps": (8, 4, {"pe": 2, "simd": 4, "out_bits": 3}),
    "sf1-nf1-bias": (3, 3, {"pe": 3, "simd": 3, "mode": "bias"}),
    "sf1-bias-nf3": (6, 3, {"pe": 2, "simd": 3, "mode": "bias"}),
    "wide-simd": (4, 16, {"pe": 2, "simd": 16, "in_bits": 2, "weight_bits": 2, "out_bits": 1}),
    # Binary layers: XNOR-popcount (with padding lanes: simd does not divide mw), and binary
    # operands facing integer ones.
    "xnor-sign": (10, 23, {"pe": 4, "simd": 5, "out_bits": 1, "in_bipolar": True,
                           "weight_bipolar": True}),
    "xnor-wide": (6, 49, {"pe": 2, "simd": 49, "out_bits": 1, "in_bipolar": True,
                          "weight_bipolar": True}),
    "xnor-logits": (7, 13, {"pe": 3, "simd": 4, "mode": "bias", "in_bipolar": True,
                            "weight_bipolar": True}),
    "xnor-2bit-out": (5, 11, {"pe": 5, "simd": 3, "out_bits": 2, "in_bipolar": True,
                              "weight_bipolar": True}),
    "binary-weights-int-in": (6, 11, {"pe": 2, "simd": 4, "in_bits": 3, "in_signed": True,
                                      "out_bits": 1, "weight_bipolar": True}),
    "binary-in-int-weights": (6, 11, {"pe": 3, "simd": 4, "weight_bits": 3, "out_bits": 1,
                                      "in_bipolar": True}),
    "binary-in-int-weights-logits": (4, 7, {"pe": 2, "simd": 3, "weight_bits": 4,
                                            "mode": "bias", "in_bipolar": True}),
}


def check(layer, frames=3, seed=0, **kw):
    rng = np.random.default_rng(seed)
    x = random_inputs(rng, frames, layer.mw, layer.in_bits, layer.in_signed)
    dut = MVAU(layer)
    out, tin, tout = simulate(dut, to_beats(x, layer.simd, layer.in_bits), frames * layer.nf,
                              seed=seed, **kw)
    got = from_beats(out, layer.mh, layer.pe, layer.out_bits, layer.out_signed)
    np.testing.assert_array_equal(got, golden.mvau(layer, x))
    return dut, tin, tout


@pytest.mark.parametrize("case", CASES)
def test_mvau_backpressure(case):
    mh, mw, kw = CASES[case]
    layer = make_mvau(np.random.default_rng(zlib.crc32(case.encode())), mh, mw, **kw)
    check(layer, frames=5, p_gap=0.3, p_stall=0.4, seed=1)


@pytest.mark.parametrize("case", ["thresholds-unsigned", "bias-logits", "pe1-simd1", "nf1",
                                  "sf-lt-steps", "sf1-nf1-bias", "sf1-bias-nf3", "wide-simd",
                                  "xnor-sign", "xnor-wide"])
def test_mvau_throughput_latency(case):
    mh, mw, kw = CASES[case]
    layer = make_mvau(np.random.default_rng(5), mh, mw, **kw)
    frames = 4
    dut, tin, tout = check(layer, frames=frames)
    firsts = tout[::layer.nf]
    assert [b - a for a, b in itertools.pairwise(firsts)] == \
        [layer.cycles] * (frames - 1)
    assert tin[-1] - tin[0] == layer.cycles * (frames - 1) + layer.sf - 1
    assert tout[0] - tin[0] == dut.latency


def test_threshold_heap_is_binary_search():
    rng = np.random.default_rng(3)
    for out_bits in (1, 2, 3, 4):
        row = np.sort(rng.integers(-20, 20, size=2**out_bits - 1))
        heap = threshold_heap(row, out_bits)
        for acc in range(-22, 23):
            node = 1
            for _ in range(out_bits):
                node = 2 * node + int(acc >= heap[node])
            assert node - 2**out_bits == int((acc >= row).sum())


def test_memory_shapes():
    layer = make_mvau(np.random.default_rng(0), 10, 13, pe=4, simd=5, in_bits=4,
                      weight_bits=4, out_bits=2)
    tb = layer.threshold_bits
    expect = [("weights", 4 * 5 * 4, 3 * 3), ("input_buffer", 5 * 4, 3)] + \
        [(f"thresholds[{j}]", tb, 3 * 4) for j in range(4)]
    assert memory_shapes(layer) == expect
    dut = MVAU(layer)
    assert dut.memory_shapes == expect
    # The elaborated design holds exactly these memories.
    from amaranth.hdl import Fragment
    from amaranth.lib.memory import Memory
    fragment = Fragment.get(dut, None)
    found = []

    def walk(frag):
        for sub, _name, _loc in frag.subfragments:
            walk(sub)
        if isinstance(getattr(frag, "origins", None), tuple):
            for origin in frag.origins:
                if isinstance(origin, Memory):
                    found.append((origin.shape.width, origin.depth))
    walk(fragment)
    assert sorted(found) == sorted((w, d) for _, w, d in expect)


def test_mvau_rejects_bad_layers():
    with pytest.raises(TypeError, match=r"dataflow\.MVAU"):
        MVAU("not a layer")
    layer = make_mvau(np.random.default_rng(0), 4, 4, pe=2, simd=2)
    layer.out_bits = 0
    with pytest.raises(ValueError, match="out_bits=0"):
        MVAU(layer)
    layer = make_mvau(np.random.default_rng(0), 4, 4, pe=2, simd=2)
    layer.pe = 5
    with pytest.raises(ValueError, match="pe=5"):
        MVAU(layer)
    layer = make_mvau(np.random.default_rng(0), 4, 4, pe=2, simd=2)
    layer.in_bits = 2.0
    with pytest.raises(TypeError, match="in_bits"):
        MVAU(layer)
    assert isinstance(layer, MVAULayer)


@pytest.mark.parametrize("seed", range(16))
def test_mvau_random_sweep(seed):
    """Random shapes, foldings, widths and modes under back-pressure, checked against the
    golden model and (without gaps) the exact cycle count."""
    rng = np.random.default_rng(1000 + seed)
    mh, mw = int(rng.integers(1, 12)), int(rng.integers(1, 14))
    mode = ["thresholds", "bias", "logits"][seed % 3]
    kw = {
        "pe": int(rng.integers(1, mh + 1)), "simd": int(rng.integers(1, mw + 1)),
        "in_bits": int(rng.integers(1, 5)), "in_signed": bool(rng.integers(2)),
        "weight_bits": int(rng.integers(2, 5)), "weight_signed": bool(rng.integers(2)),
        "out_bits": int(rng.integers(1, 5)), "out_signed": bool(rng.integers(2)),
        "mode": mode, "in_bipolar": seed % 4 in (1, 2), "weight_bipolar": seed % 4 in (2, 3),
    }
    layer = make_mvau(rng, mh, mw, **kw)
    check(layer, frames=4, p_gap=0.25, p_stall=0.35, seed=seed)
    frames = 3
    dut, tin, tout = check(layer, frames=frames, seed=seed)
    firsts = tout[::layer.nf]
    assert [b - a for a, b in itertools.pairwise(firsts)] == [layer.cycles] * (frames - 1)
    assert tout[0] - tin[0] == dut.latency


def _with_weights(layer, weights):
    """``layer`` with other weights (and an accumulator wide enough for them)."""
    amin, amax = acc_range(weights, layer.in_bits, layer.in_signed)
    layer.weights = np.asarray(weights, dtype=np.int64)
    layer.acc_bits = max(layer.acc_bits,
                         bits_for_range(min(int(amin.min()), -1), int(amax.max()))[0])
    return layer


WEIGHT_CASES = {
    # name: (weight_bits, in_signed, weight range, expected coding)
    "narrow-signed": (4, False, (-7, 7), (True, 3)),
    "narrow-signed-in-signed": (4, True, (-7, 7), (True, 3)),
    "narrow-signed-small": (4, False, (-2, 3), (True, 2)),
    "narrow-signed-3bit": (3, True, (-3, 3), (True, 2)),
    "full-signed": (4, False, (-8, 7), (False, 4)),
    "full-signed-in-signed": (3, True, (-4, 3), (False, 3)),
    "signed-nonnegative": (4, False, (0, 7), (False, 3)),
    "all-zero": (3, True, (0, 0), (False, 1)),
}


@pytest.mark.parametrize("case", WEIGHT_CASES)
def test_mvau_weight_coding(case):
    """Sign-magnitude products (narrow signed weights) against two's complement ones, with
    ``-2**(b-1)`` present, with signed inputs, and degenerate weights; wide simd so that the
    sign carries reach every adder and the accumulator."""
    wb, in_signed, (lo, hi), coding = WEIGHT_CASES[case]
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    for mh, mw, pe, simd in ((6, 23, 2, 11), (4, 9, 4, 1), (5, 16, 1, 8)):
        layer = make_mvau(rng, mh, mw, pe=pe, simd=simd, in_bits=4, in_signed=in_signed,
                          weight_bits=wb, out_bits=3)
        weights = rng.integers(lo, hi + 1, size=(mh, mw))
        weights[0, 0], weights[-1, -1] = lo, hi  # both ends of the range occur
        layer = _with_weights(layer, weights)
        assert _weight_coding(layer) == coding
        check(layer, frames=3, p_gap=0.2, p_stall=0.3, seed=simd)
        dut, tin, tout = check(layer, frames=3, seed=simd)
        assert tout[0] - tin[0] == dut.latency


GATHER = {
    # name: (mh, mw, keyword arguments of make_mvau): gather lanes on sparse weights
    "gather-thresholds": (10, 13, {"pe": 2, "simd": 3, "out_bits": 2, "density": 0.25}),
    "gather-signed-in": (6, 16, {"pe": 3, "simd": 2, "out_bits": 3, "in_signed": True,
                                 "weight_bits": 4, "density": 0.3}),
    "gather-bias": (7, 12, {"pe": 2, "simd": 4, "mode": "bias", "density": 0.2}),
    "gather-pe1-simd1": (3, 9, {"pe": 1, "simd": 1, "out_bits": 2, "density": 0.4}),
    "gather-dense": (4, 6, {"pe": 2, "simd": 2, "out_bits": 1, "density": 1.0}),
    "gather-empty-rows": (5, 8, {"pe": 1, "simd": 2, "out_bits": 2, "density": 0.05}),
    "gather-binary-in": (6, 11, {"pe": 3, "simd": 2, "weight_bits": 3, "out_bits": 1,
                                 "in_bipolar": True, "density": 0.3}),
    "gather-fill-bound": (2, 8, {"pe": 2, "simd": 2, "mode": "bias", "density": 0.5}),
    "gather-fill-eq-compute": (2, 4, {"pe": 2, "simd": 1, "mode": "bias", "density": 1.0}),
}


def gather_layer(case):
    mh, mw, kw = GATHER[case]
    return make_mvau(np.random.default_rng(zlib.crc32(case.encode())), mh, mw, gather=True,
                     **kw)


@pytest.mark.parametrize("case", GATHER)
def test_gather_backpressure(case):
    check(gather_layer(case), frames=5, p_gap=0.3, p_stall=0.4, seed=1)


@pytest.mark.parametrize("case", GATHER)
def test_gather_throughput_latency(case):
    layer = gather_layer(case)
    frames = 5
    dut, tin, tout = check(layer, frames=frames)
    firsts = tout[::layer.nf]
    assert [b - a for a, b in itertools.pairwise(firsts)] == [layer.cycles] * (frames - 1)
    assert tout[0] - tin[0] == dut.latency


def test_gather_cycle_cases_are_covered():
    """The three cases of the cycle formula: compute-bound, fill-bound, and equal (an idle
    slot more: the bank is handed back a cycle after its last slot)."""
    layers = {case: gather_layer(case) for case in GATHER}
    compute = {case: sum(max(c, layer.steps) for c in layer.fold_slots)
               for case, layer in layers.items()}
    assert layers["gather-thresholds"].cycles == compute["gather-thresholds"] > \
        layers["gather-thresholds"].sf
    assert layers["gather-fill-bound"].cycles == layers["gather-fill-bound"].sf > \
        compute["gather-fill-bound"]
    assert layers["gather-fill-eq-compute"].cycles == layers["gather-fill-eq-compute"].sf + 1
    assert compute["gather-fill-eq-compute"] == layers["gather-fill-eq-compute"].sf


def test_gather_skips_zeros():
    """A quarter of the weights: about a quarter of the slots."""
    layer = gather_layer("gather-thresholds")
    dense = make_mvau(np.random.default_rng(0), 10, 13, pe=2, simd=3, out_bits=2)
    assert sum(layer.fold_slots) < sum(dense.fold_slots) / 2
