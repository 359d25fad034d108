"""HostLink in Amaranth's simulator: bytes to framed beats and beats back to bytes."""

import random

import pytest
from amaranth.sim import Simulator

from hwgen.hw.host_link import HostLink, nbytes


def to_bytes(beats, width):
    return [(b >> (8 * k)) & 0xFF for b in beats for k in range(nbytes(width))]


def run(dut, *testbenches):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run()


def test_parameter_validation():
    with pytest.raises(ValueError, match="beats_in"):
        HostLink(8, 8, 0, 1)
    with pytest.raises(TypeError, match="in_width"):
        HostLink(8.0, 8, 1, 1)
    assert [nbytes(w) for w in (1, 8, 9, 16, 17)] == [1, 1, 2, 2, 3]


@pytest.mark.parametrize("in_width,beats_in", [(12, 3), (8, 2), (20, 1), (3, 4)])
def test_bytes_to_beats(in_width, beats_in):
    dut = HostLink(in_width, 8, beats_in, 1)
    rng = random.Random(in_width)
    frames = 3
    beats = [rng.getrandbits(in_width) for _ in range(frames * beats_in)]
    data = to_bytes(beats, in_width)
    # Junk in the unused top bits of the last byte of a beat must be ignored.
    n = nbytes(in_width)
    data = [b | (0xFF << (in_width % 8) & 0xFF if in_width % 8 and k % n == n - 1 else 0)
            for k, b in enumerate(data)]
    got = []

    async def send(ctx):
        for k, byte in enumerate(data):
            gap = 40 if k == len(data) // 2 + 1 else rng.choice([0, 0, 1, 4])  # a long gap
            for _ in range(gap):
                await ctx.tick()
            ctx.set(dut.rx.valid, 1)
            ctx.set(dut.rx.payload, byte)
            await ctx.tick().until(dut.rx.ready)
            ctx.set(dut.rx.valid, 0)

    async def receive(ctx):
        while len(got) < len(beats):
            ready = rng.random() < 0.6
            ctx.set(dut.beats_o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.beats_o.valid,
                                                          dut.beats_o.payload)
            if valid and ready:
                got.append((payload.data, payload.last))

    run(dut, send, receive)
    assert got == [(b, int(k % beats_in == beats_in - 1)) for k, b in enumerate(beats)]


@pytest.mark.parametrize("out_width,beats_out", [(10, 3), (8, 1), (24, 2)])
def test_beats_to_bytes(out_width, beats_out):
    dut = HostLink(8, out_width, 1, beats_out)
    rng = random.Random(out_width)
    beats = [rng.getrandbits(out_width) for _ in range(3 * beats_out)]
    got = []

    async def send(ctx):
        for k, beat in enumerate(beats):
            if k == len(beats) // 2:
                await ctx.tick().repeat(30)  # a gap mid-stream
            ctx.set(dut.beats_i.valid, 1)
            ctx.set(dut.beats_i.payload, {"data": beat, "last": k % beats_out == beats_out - 1})
            await ctx.tick().until(dut.beats_i.ready)
            ctx.set(dut.beats_i.valid, 0)

    async def receive(ctx):
        while len(got) < len(beats) * nbytes(out_width):
            ready = rng.random() < 0.5
            ctx.set(dut.tx.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.tx.valid, dut.tx.payload)
            if valid and ready:
                got.append(payload)
        assert not ctx.get(dut.misframed)

    run(dut, send, receive)
    assert got == to_bytes(beats, out_width)


def test_misframed_output():
    dut = HostLink(8, 8, 1, 2)
    flags = []

    async def tb(ctx):
        ctx.set(dut.tx.ready, 1)
        for last in (0, 1, 1):  # the third beat is the first of a frame: its last is wrong
            ctx.set(dut.beats_i.valid, 1)
            ctx.set(dut.beats_i.payload, {"data": 0x42, "last": last})
            await ctx.tick().until(dut.beats_i.ready)
            ctx.set(dut.beats_i.valid, 0)
            await ctx.tick().repeat(2)
            flags.append(ctx.get(dut.misframed))

    run(dut, tb)
    assert flags == [0, 0, 1]
