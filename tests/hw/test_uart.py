"""UART receiver and transmitter in Amaranth's simulator: loopback, glitches, framing errors."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from hwgen.hw.uart import UARTRx, UARTTx, uart_divisor

DIV = 8


def run(dut, *testbenches, deadline=100_000):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run_until(deadline * 1e-6)


async def bitbang(ctx, line, byte, divisor, stop=1):
    """Drive one 8N1 character on ``line``."""
    for bit in [0, *((byte >> k) & 1 for k in range(8)), stop]:
        ctx.set(line, bit)
        await ctx.tick().repeat(divisor)
    ctx.set(line, 1)


def test_divisor_validation():
    assert uart_divisor(12e6, 115200) == 104
    with pytest.raises(ValueError, match="off by"):
        uart_divisor(12e6, 1_400_000)  # 8.57 cycles per bit: 9 is 4.8 % slow
    with pytest.raises(ValueError, match="at least"):
        UARTRx(3)
    with pytest.raises(TypeError, match="integer"):
        UARTTx(8.0)


def test_divisor_exact():
    assert uart_divisor(12e6, 1_000_000, tolerance=0.0) == 12
    with pytest.raises(ValueError, match="too fast"):
        uart_divisor(12e6, 6_000_000)


def test_loopback_with_gaps():
    m = Module()
    m.submodules.tx = tx = UARTTx(DIV)
    m.submodules.rx = rx = UARTRx(DIV)
    m.d.comb += rx.rx.eq(tx.tx)
    rng = random.Random(1)
    data = [0x00, 0xFF, 0x55, 0xAA, *(rng.randrange(256) for _ in range(8))]
    got = []

    async def send(ctx):
        for byte in data:
            for _ in range(rng.choice([0, 0, 3, 25])):  # gaps, some longer than a bit
                await ctx.tick()
            ctx.set(tx.i.valid, 1)
            ctx.set(tx.i.payload, byte)
            await ctx.tick().until(tx.i.ready)
            ctx.set(tx.i.valid, 0)

    async def receive(ctx):
        ctx.set(rx.o.ready, 1)
        while len(got) < len(data):
            _, _, valid, payload, error = await ctx.tick().sample(rx.o.valid, rx.o.payload,
                                                                rx.error)
            assert not error
            if valid:
                got.append(payload)

    run(m, send, receive, deadline=len(data) * 10 * DIV * 2)
    assert got == data


def test_tx_bit_timing():
    dut = UARTTx(DIV)
    line = []

    async def tb(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 0xA5)
        await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        for _ in range(10 * DIV + 4):
            line.append(ctx.get(dut.tx))
            await ctx.tick()

    run(dut, tb)
    bits = [0, *((0xA5 >> k) & 1 for k in range(8)), 1]
    assert line[:10 * DIV] == [b for b in bits for _ in range(DIV)]
    assert line[10 * DIV:] == [1] * 4


def test_rx_glitch_framing_error_and_overrun():
    dut = UARTRx(DIV)
    events = []

    async def drive(ctx):
        await ctx.tick().repeat(5)
        ctx.set(dut.rx, 0)  # a glitch shorter than half a bit: no start
        await ctx.tick().repeat(DIV // 2 - 2)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3 * DIV)
        await bitbang(ctx, dut.rx, 0x3C, DIV, stop=0)  # framing error
        await ctx.tick().repeat(2 * DIV)
        await bitbang(ctx, dut.rx, 0x81, DIV)
        await ctx.tick().repeat(DIV)
        await bitbang(ctx, dut.rx, 0x7E, DIV)  # nobody took 0x81: overrun
        await ctx.tick().repeat(2 * DIV)

    async def watch(ctx):
        ctx.set(dut.o.ready, 0)
        async for _, _, valid, payload, error, overrun in ctx.tick().sample(
                dut.o.valid, dut.o.payload, dut.error, dut.overrun):
            if error:
                events.append("error")
            if overrun:
                events.append("overrun")
            if valid and (not events or events[-1] != payload):
                events.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(drive)
    sim.add_testbench(watch, background=True)
    sim.run()
    assert events == ["error", 0x81, "overrun", 0x7E]
