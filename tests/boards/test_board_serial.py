"""The accelerator behind the UART host link, simulated from the serial pins."""

import random

import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hwgen.boards.standin import StandInAccelerator
from hwgen.boards.top import BoardTop, SerialAccelerator

DIV = 6


async def send_byte(ctx, line, byte):
    for bit in [0, *((byte >> k) & 1 for k in range(8)), 1]:
        ctx.set(line, bit)
        await ctx.tick().repeat(DIV)


async def recv_byte(ctx, line):
    await ctx.tick().until(~line)  # start bit
    await ctx.tick().repeat(DIV // 2)
    assert not ctx.get(line)
    byte = 0
    for k in range(8):
        await ctx.tick().repeat(DIV)
        byte |= ctx.get(line) << k
    await ctx.tick().repeat(DIV)
    assert ctx.get(line), "stop bit"
    return byte


def test_frames_over_serial():
    beats = 3
    acc = StandInAccelerator(12, 10, beats, n_roms=1, seed=3)
    dut = SerialAccelerator(acc, beats, beats, DIV)
    rng = random.Random(5)
    frames = [[rng.getrandbits(12) for _ in range(beats)] for _ in range(2)]
    tx_bytes = [(b >> s) & 0xFF for f in frames for b in f for s in (0, 8)]
    expect = [(acc.model(b) >> s) & 0xFF for f in frames for b in f for s in (0, 8)]
    got = []

    async def host_tx(ctx):
        for k, byte in enumerate(tx_bytes):
            if k == 3:
                await ctx.tick().repeat(5 * DIV)  # the line idles mid-beat
            await send_byte(ctx, dut.rx, byte)

    async def host_rx(ctx):
        while len(got) < len(expect):
            got.append(await recv_byte(ctx, dut.tx))
        assert not ctx.get(dut.error)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(host_tx)
    sim.add_testbench(host_rx)
    sim.run()
    assert got == expect


def test_board_top_validates():
    acc = StandInAccelerator(8, 8, 1, n_roms=0)
    top = BoardTop(acc, 1, 1, "ice40")
    assert top.divisor == 104 and top.board.name == "icebreaker"
    Fragment.get(top, None)  # elaborates without a platform (no pins)
    with pytest.raises(TypeError, match="frame_error"):
        BoardTop(object(), 1, 1, "ice40")
