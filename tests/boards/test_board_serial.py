"""The accelerator behind the UART host link, simulated from the serial pins."""

import random

import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hwgen.boards.protocol import LinkFormat, ReplyDecoder
from hwgen.boards.standin import StandInAccelerator, XorAccelerator
from hwgen.boards.top import BoardTop, SerialAccelerator
from hwgen.hw.status_led import StatusLED

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
    dut = SerialAccelerator(acc, beats, beats, DIV, clock_hz=20_000)  # a 400-cycle flicker
    fmt = LinkFormat(beats, 12, 1, beats, 10, 1)
    rng = random.Random(5)
    frames = [[rng.getrandbits(12) for _ in range(beats)] for _ in range(2)]
    request = [fmt.request(k, f) for k, f in enumerate(frames)]
    decoder = ReplyDecoder(fmt)
    replies = []
    leds = []

    async def host_tx(ctx):
        for k, byte in enumerate(b"".join(request)):
            if k == 3:
                await ctx.tick().repeat(5 * DIV)  # the line idles mid-request
            await send_byte(ctx, dut.rx, byte)

    async def host_rx(ctx):
        while len(replies) < len(frames):
            replies.extend(decoder.feed(bytes([await recv_byte(ctx, dut.tx)])))
            leds.append(ctx.get(dut.led))
        assert not ctx.get(dut.fault)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(host_tx)
    sim.add_testbench(host_rx)
    sim.run()
    assert [(r.tag, r.status) for r in replies] == [(0, "ok"), (1, "ok")]
    for reply, frame in zip(replies, frames, strict=True):
        assert reply.outputs.tolist() == [acc.model(b) for b in frame]
    assert 0 in leds  # the LED flickers off as a reply goes out


def test_status_led():
    dut = StatusLED(flash=3, hold=10, blink=2)
    trace = []

    async def tb(ctx):
        for cycle in range(40):
            ctx.set(dut.ok, cycle == 2)
            ctx.set(dut.error, cycle == 10)
            ctx.set(dut.fault, cycle >= 30)
            await ctx.tick()
            trace.append(ctx.get(dut.led))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert trace[:10] == [1, 1, 0, 0, 0, 1, 1, 1, 1, 1]   # lit; a flicker after ok
    assert trace[10:21] == [0] * 10 + [1]               # a long gap after an error
    assert trace[30:38] in ([1, 1, 0, 0, 1, 1, 0, 0], [0, 0, 1, 1, 0, 0, 1, 1],
                            [1, 0, 0, 1, 1, 0, 0, 1], [0, 1, 1, 0, 0, 1, 1, 0])


def test_board_top_validates():
    acc = StandInAccelerator(8, 8, 1, n_roms=0)
    top = BoardTop(acc, 1, 1, "ice40")
    assert top.divisor == 104 and top.board.name == "icebreaker"
    Fragment.get(top, None)  # elaborates without a platform (no pins)
    with pytest.raises(TypeError, match="frame_error"):
        BoardTop(object(), 1, 1, "ice40")


def test_xor_accelerator_over_serial():
    acc = XorAccelerator(12, 9, beats_in=3, beats_out=2)
    dut = SerialAccelerator(acc, 3, 2, DIV, clock_hz=20_000)
    fmt = LinkFormat(3, 12, 1, 2, 9, 1)
    frames = [[0x123, 0x456, 0x789], [0xFFF, 0x001, 0x0C0]]
    decoder = ReplyDecoder(fmt)
    replies = []

    async def host_tx(ctx):
        for byte in b"".join(fmt.request(k, f) for k, f in enumerate(frames)):
            await send_byte(ctx, dut.rx, byte)

    async def host_rx(ctx):
        while len(replies) < len(frames):
            replies.extend(decoder.feed(bytes([await recv_byte(ctx, dut.tx)])))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(host_tx)
    sim.add_testbench(host_rx)
    sim.run()
    assert [r.outputs.tolist() for r in replies] == [acc.model(f) for f in frames]


def test_status_led_stays_mostly_lit_while_frames_stream():
    dut = StatusLED(flash=3, hold=10, blink=2)
    trace = []

    async def tb(ctx):
        ctx.set(dut.ok, 1)  # a reply every cycle
        for _ in range(60):
            await ctx.tick()
            trace.append(ctx.get(dut.led))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert 0 in trace and sum(trace) >= len(trace) // 2
