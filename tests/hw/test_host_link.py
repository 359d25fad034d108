"""HostLink in Amaranth's simulator: framed requests in, replies out, bad requests answered
with their reason and never with a wrong output."""

import random

import numpy as np
import pytest
from amaranth.hdl import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hwgen.boards.protocol import LinkFormat, ReplyDecoder, checksum, slip
from hwgen.boards.standin import StandInAccelerator
from hwgen.hw.host_link import END, ESC, HostLink, SLIPEncoder, nbytes
from hwgen.hw.stream import framed_signature


class LinkedStandIn(wiring.Component):
    """HostLink in front of a StandInAccelerator (one element per beat, ``bits`` wide)."""

    def __init__(self, bits, beats, fault=False):
        self.acc = StandInAccelerator(bits, bits, beats, n_roms=1, seed=2)
        self.link = HostLink(bits, bits, beats, beats)
        self.fmt = LinkFormat(beats, bits, 1, beats, bits, 1)
        self.force_fault = fault
        super().__init__({"rx": In(stream.Signature(unsigned(8))),
                          "line_error": In(1),
                          "tx": Out(self.link.tx.signature)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.acc = self.acc
        m.submodules.link = self.link
        wiring.connect(m, wiring.flipped(self.rx), self.link.rx)
        wiring.connect(m, self.link.tx, wiring.flipped(self.tx))
        wiring.connect(m, self.link.beats_o, self.acc.i)
        wiring.connect(m, self.acc.o, self.link.beats_i)
        m.d.comb += [self.link.line_error.eq(self.line_error),
                     self.link.fault.eq(self.acc.frame_error | self.force_fault)]
        return m

    def expected(self, codes):
        return [self.acc.model(int(c)) for c in codes]


def run_link(dut, chunks, n_replies, *, seed=0, line_error_at=None, max_cycles=60_000,
             tx_hold=0):
    """Send ``chunks`` (bytes) into ``dut.rx`` with random gaps and a randomly stalled ``tx``
    (held low for the first ``tx_hold`` cycles); return the decoded replies.
    ``line_error_at`` pulses ``line_error`` before that byte."""
    rng = random.Random(seed)
    stream = [b for chunk in chunks for b in chunk]
    decoder = ReplyDecoder(dut.fmt)
    replies = []

    async def send(ctx):
        for k, byte in enumerate(stream):
            await ctx.tick().repeat(rng.choice([1, 1, 2, 5]))
            if k == line_error_at:
                ctx.set(dut.line_error, 1)
                await ctx.tick()
                ctx.set(dut.line_error, 0)
            ctx.set(dut.rx.valid, 1)
            ctx.set(dut.rx.payload, byte)
            await ctx.tick().until(dut.rx.ready)
            ctx.set(dut.rx.valid, 0)

    async def receive(ctx):
        for cycle in range(max_cycles):
            ready = rng.random() < 0.6 and cycle >= tx_hold
            ctx.set(dut.tx.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.tx.valid, dut.tx.payload)
            if valid and ready:
                replies.extend(decoder.feed(bytes([payload])))
                if len(replies) == n_replies:
                    await ctx.tick().repeat(200)  # nothing more may come
                    ctx.set(dut.tx.ready, 1)
                    _, _, valid = await ctx.tick().sample(dut.tx.valid)
                    assert not valid, "a reply more than expected"
                    return
        raise AssertionError(f"only {len(replies)} of {n_replies} replies")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(send)
    sim.add_testbench(receive)
    sim.run()
    return replies


def frames_for(fmt, rng, count):
    return [np.array([rng.randrange(1 << fmt.in_bits) for _ in range(fmt.n_in)])
            for _ in range(count)]


def test_parameter_validation():
    with pytest.raises(ValueError, match="beats_in"):
        HostLink(8, 8, 0, 1)
    with pytest.raises(TypeError, match="in_width"):
        HostLink(8.0, 8, 1, 1)
    assert [nbytes(w) for w in (1, 8, 9, 16, 17)] == [1, 1, 2, 2, 3]


@pytest.mark.parametrize("bits,beats", [(8, 3), (12, 2), (5, 4)])
def test_good_requests_get_the_accelerators_outputs(bits, beats):
    dut = LinkedStandIn(bits, beats)
    rng = random.Random(bits)
    frames = frames_for(dut.fmt, rng, 4)
    if bits == 8:  # bytes that need escaping, in the request and (through the ROM) the reply
        frames[0][:2] = [END, ESC]
    chunks = [dut.fmt.request(40 + k, f) for k, f in enumerate(frames)]
    chunks.insert(1, bytes([END, END]))  # empty packets are ignored
    replies = run_link(dut, chunks, len(frames), seed=bits)
    assert [r.tag for r in replies] == [40 + k for k in range(len(frames))]
    for reply, frame in zip(replies, frames, strict=True):
        assert reply.status == "ok", reply
        assert reply.outputs.tolist() == dut.expected(frame)


def body_of(fmt, tag, frame):
    return fmt.request(tag, frame)[1:-1]  # no escapes for these values


def test_bad_requests_are_answered_and_the_link_recovers():
    dut = LinkedStandIn(6, 3)
    fmt = dut.fmt
    good = [np.array([1, 2, 3]), np.array([4, 5, 6]), np.array([7, 8, 9]),
            np.array([10, 11, 12]), np.array([13, 14, 15])]
    corrupt = bytearray(body_of(fmt, 1, good[0]))
    corrupt[2] ^= 0x04
    truncated = body_of(fmt, 3, good[0])[:2]                      # tag and one input byte
    too_long = body_of(fmt, 5, good[0]) + b"\x00"
    bad_escape = bytes([7, ESC, 0x11]) + body_of(fmt, 7, good[0])[2:]
    chunks = [
        bytes([END]) + bytes(corrupt) + bytes([END]),
        fmt.request(2, good[1]),
        bytes([END]) + truncated + bytes([END]),
        fmt.request(4, good[2]),
        bytes([END]) + too_long + bytes([END]),
        bytes([END]) + bad_escape + bytes([END]),
        fmt.request(8, good[3]),
        fmt.request(9, good[4]),
    ]
    replies = run_link(dut, chunks, 8, seed=3)
    assert [(r.tag, r.status) for r in replies] == [
        (1, "bad_crc"), (2, "ok"), (3, "bad_length"), (4, "ok"), (5, "bad_length"),
        (7, "line_error"), (8, "ok"), (9, "ok")]
    for k, reply in ((1, replies[1]), (2, replies[3]), (3, replies[6]), (4, replies[7])):
        assert reply.outputs.tolist() == dut.expected(good[k])
    assert all(r.outputs is None for r in replies if not r.ok)


def test_line_error_spoils_the_request_it_hits():
    dut = LinkedStandIn(8, 2)
    chunks = [dut.fmt.request(k, [k, k + 1]) for k in range(3)]
    at = len(chunks[0]) + 2  # inside the second request
    replies = run_link(dut, chunks, 3, line_error_at=at)
    assert [r.status for r in replies] == ["ok", "line_error", "ok"]


def test_fault_is_never_answered_ok():
    dut = LinkedStandIn(8, 2, fault=True)
    replies = run_link(dut, [dut.fmt.request(0, [1, 2])], 1)
    assert replies[0].status == "fault" and replies[0].outputs is None


def test_codec_checksum_and_slip():
    assert checksum(b"123456789") == (0x906E).to_bytes(2, "little")  # CRC-16/IBM-SDLC check
    assert slip(bytes([1, END, ESC, 2])) == bytes([END, 1, ESC, 0xDC, ESC, 0xDD, 2, END])


def test_slip_encoder_escapes():
    dut = SLIPEncoder()
    items = [(END, 1), (5, 0), (END, 0), (ESC, 0), (END, 1)]
    got = []

    async def tb(ctx):
        ctx.set(dut.o.ready, 1)
        for byte, raw in items:
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, {"byte": byte, "raw": raw})
            while True:
                _, _, ready, valid, payload = await ctx.tick().sample(
                    dut.i.ready, dut.o.valid, dut.o.payload)
                if valid:
                    got.append(payload)
                if ready:
                    break
        ctx.set(dut.i.valid, 0)
        await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert got == [END, 5, ESC, 0xDC, ESC, 0xDD, END]


def test_misframed_output_answers_fault():
    class Misframing(wiring.Component):
        def __init__(self):
            self.link = HostLink(8, 8, 1, 2)
            self.fmt = LinkFormat(1, 8, 1, 2, 8, 1)
            super().__init__({"rx": In(stream.Signature(unsigned(8))),
                              "line_error": In(1), "tx": Out(self.link.tx.signature),
                              "acc": In(framed_signature(8))})

        def elaborate(self, platform):
            m = Module()
            m.submodules.link = self.link
            wiring.connect(m, wiring.flipped(self.rx), self.link.rx)
            wiring.connect(m, self.link.tx, wiring.flipped(self.tx))
            wiring.connect(m, wiring.flipped(self.acc), self.link.beats_i)
            m.d.comb += [self.link.beats_o.ready.eq(1), self.link.line_error.eq(self.line_error)]
            return m

    dut = Misframing()
    replies = []
    decoder = ReplyDecoder(dut.fmt)

    async def accelerator(ctx):
        for last in (1, 1, 0, 1):  # the first frame's first beat claims to be last
            ctx.set(dut.acc.valid, 1)
            ctx.set(dut.acc.payload, {"data": 0x42, "last": last})
            await ctx.tick().until(dut.acc.ready)
            ctx.set(dut.acc.valid, 0)

    async def host(ctx):
        ctx.set(dut.tx.ready, 1)
        for tag in (0, 1):
            for byte in dut.fmt.request(tag, [tag]):
                ctx.set(dut.rx.valid, 1)
                ctx.set(dut.rx.payload, byte)
                await ctx.tick().until(dut.rx.ready)
            ctx.set(dut.rx.valid, 0)
            while len(replies) <= tag:
                _, _, valid, payload = await ctx.tick().sample(dut.tx.valid, dut.tx.payload)
                if valid:
                    replies.extend(decoder.feed(bytes([payload])))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(accelerator)
    sim.add_testbench(host)
    sim.run()
    # The misframing is seen while the first reply takes the frame: its status says so.
    assert [r.status for r in replies] == ["fault", "fault"]


def test_burst_of_short_packets_ending_in_an_escaped_end():
    """More short packets than the verdict queue holds, the last closed by ``ESC END``: every
    one gets its reply and the next good request its own outputs (an escaped END that slipped
    past the full queue once lost a verdict, and every later reply was a frame behind)."""
    dut = LinkedStandIn(8, 1)
    chunks = [bytes([END, 0x10 + k, END]) for k in range(5)]  # fill the queue and reply side
    chunks += [bytes([0x66, ESC, END]), dut.fmt.request(9, [0x5A]),
               dut.fmt.request(10, [0x5B])]
    replies = run_link(dut, chunks, 8, seed=4, tx_hold=400)
    assert [(r.tag, r.status) for r in replies] == (
        [(0x10 + k, "bad_length") for k in range(5)] + [(0x66, "line_error"), (9, "ok"),
                                                        (10, "ok")])
    assert replies[6].outputs.tolist() == dut.expected([0x5A])
    assert replies[7].outputs.tolist() == dut.expected([0x5B])
