"""Helpers for the hw unit tests: random layers, beat packing and a stream driver."""

import math
import random

import numpy as np
from amaranth.sim import Simulator

from hwgen.compiler.dataflow import MVAU, bits_for_range, int_range


def pack(values, bits):
    word = 0
    for k, v in enumerate(values):
        word |= (int(v) & ((1 << bits) - 1)) << (k * bits)
    return word


def unpack(word, lanes, bits, signed):
    out = []
    for k in range(lanes):
        v = (word >> (k * bits)) & ((1 << bits) - 1)
        if signed and v >= 1 << (bits - 1):
            v -= 1 << bits
        out.append(v)
    return out


def to_beats(frames, lanes, bits, junk=True):
    """Frames ``[F, n]`` to a flat list of beats (padding lanes filled with junk, unless
    ``junk`` is false, so that tests check they are ignored)."""
    beats = []
    for frame in frames:
        n = len(frame)
        for b in range(math.ceil(n / lanes)):
            vals = list(frame[b * lanes:(b + 1) * lanes])
            vals += [(7 * b + 3) * junk for _ in range(lanes - len(vals))]
            beats.append(pack(vals, bits))
    return beats


def from_beats(beats, n, lanes, bits, signed):
    """Beats to frames ``[F, n]``; asserts padding lanes are zero."""
    per = math.ceil(n / lanes)
    assert len(beats) % per == 0
    frames = []
    for f in range(len(beats) // per):
        vals = []
        for word in beats[f * per:(f + 1) * per]:
            vals += unpack(word, lanes, bits, signed)
        assert all(v == 0 for v in vals[n:]), f"padding lanes not zero: {vals[n:]}"
        frames.append(vals[:n])
    return np.array(frames, dtype=np.int64)


def simulate(dut, in_beats, n_out, *, p_gap=0.0, p_stall=0.0, seed=0, max_cycles=None,
             make_payload=None, read_payload=None, extra=None):
    """Drive ``dut.i`` with ``in_beats`` and collect ``n_out`` beats from ``dut.o``.

    Returns ``(out_beats, in_times, out_times)`` where times are the cycles of transfers.
    ``p_gap``/``p_stall`` are the chances per cycle of ``i.valid``/``o.ready`` being low.
    """
    rng = random.Random(seed)
    max_cycles = max_cycles or 50 * (len(in_beats) + n_out) + 200
    result = {"out": [], "tin": [], "tout": []}
    make_payload = make_payload or (lambda k, beat: beat)
    read_payload = read_payload or (lambda v: v)

    async def bench(ctx):
        k = 0
        for cycle in range(max_cycles):
            if len(result["out"]) >= n_out:
                break
            valid = k < len(in_beats) and rng.random() >= p_gap
            ctx.set(dut.i.valid, int(valid))
            if k < len(in_beats):
                ctx.set(dut.i.payload, make_payload(k, in_beats[k]))
            ready = rng.random() >= p_stall
            ctx.set(dut.o.ready, int(ready))
            if valid and ctx.get(dut.i.ready):
                result["tin"].append(cycle)
                k += 1
            if ready and ctx.get(dut.o.valid):
                result["out"].append(read_payload(ctx.get(dut.o.payload)))
                result["tout"].append(cycle)
            await ctx.tick()
        if extra is not None:
            result["extra"] = extra(ctx)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(result["out"]) == n_out, (
        f"got {len(result['out'])} of {n_out} output beats "
        f"({len(result['tin'])} of {len(in_beats)} input beats taken)")
    return result["out"], result["tin"], result["tout"]


def acc_range(weights, in_bits, in_signed, in_bipolar=False):
    lo, hi = (-1, 1) if in_bipolar else int_range(in_bits, in_signed)
    w = np.asarray(weights, dtype=np.int64)
    amax = np.maximum(w * lo, w * hi).sum(axis=1)
    amin = np.minimum(w * lo, w * hi).sum(axis=1)
    return amin, amax


def make_mvau(rng, mh, mw, *, pe, simd, in_bits=3, in_signed=False, weight_bits=3,
              weight_signed=True, out_bits=2, out_signed=False, mode="thresholds",
              out_base=None, name="mvau", in_bipolar=False, weight_bipolar=False, density=1.0,
              gather=False):
    """A random MVAU description; ``mode`` is "thresholds", "bias" or "logits". Binary inputs
    (``in_bipolar``) are bits meaning -1/+1; binary weights (``weight_bipolar``) are -1/+1.
    Integer weights are zeroed at random to keep about ``density`` of them; ``gather``
    builds gather lanes."""
    if in_bipolar:
        in_bits, in_signed = 1, False
    if weight_bipolar:
        weight_bits, weight_signed = 1, True
        weights = rng.choice(np.array([-1, 1]), size=(mh, mw))
    else:
        wlo, whi = int_range(weight_bits, weight_signed)
        weights = rng.integers(wlo, whi + 1, size=(mh, mw))
        weights = weights * (rng.random((mh, mw)) < density)
    amin, amax = acc_range(weights, in_bits, in_signed, in_bipolar)
    acc_bits = bits_for_range(min(int(amin.min()), -1), int(amax.max()))[0]
    kw = {}
    if mode == "thresholds":
        lo, hi = int(amin.min()) // 2 - 2, int(amax.max()) // 2 + 3
        if in_bipolar and weight_bipolar:  # past both ends too: popcount thresholds clip
            lo, hi = int(amin.min()) - 3, int(amax.max()) + 4
        kw["thresholds"] = np.sort(rng.integers(lo, hi, size=(mh, 2**out_bits - 1)), axis=1)
        if out_base is None:
            out_base = -(2 ** (out_bits - 1)) if out_signed else 0
        kw["out_base"] = out_base
    else:
        bias = rng.integers(-5, 6, size=mh) if mode == "bias" else np.zeros(mh, np.int64)
        if mode == "bias":
            kw["bias"] = bias
        out_bits, out_signed = bits_for_range(min(int((amin + bias).min()), -1),
                                              int((amax + bias).max()))
    return MVAU(name=name, weights=weights, in_bits=in_bits, in_signed=in_signed,
                weight_bits=weight_bits, weight_signed=weight_signed, acc_bits=acc_bits,
                out_bits=out_bits, out_signed=out_signed, pe=pe, simd=simd,
                in_bipolar=in_bipolar, weight_bipolar=weight_bipolar, gather=gather,
                out_bipolar=mode == "thresholds" and out_bits == 1 and kw["out_base"] == 0,
                **kw)


def random_inputs(rng, frames, n, bits, signed):
    lo, hi = int_range(bits, signed)
    return rng.integers(lo, hi + 1, size=(frames, n))
