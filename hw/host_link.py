"""Host link: framed requests from a serial port into accelerator beats, replies back.

Protocol (version 1)
--------------------
Packets are SLIP-framed (RFC 1055): each starts and ends with ``END`` (0xC0); inside, 0xC0 is
sent as ``ESC ESC_END`` (0xDB 0xDC) and 0xDB as ``ESC ESC_ESC`` (0xDB 0xDD). An empty packet
(two ``END`` in a row) is ignored, so a host may send ``END`` at any time to resynchronise.

Request body
    ``tag`` (1 byte, echoed in the reply), then the frame's ``beats_in`` input beats of
    ``nbytes(in_width)`` bytes each, least significant byte first, then a CRC-16/IBM-SDLC
    (the HDLC FCS, :data:`CRC`) over tag and input bytes, least significant byte first.
Reply body
    ``tag``; then, for a request that arrived intact, the frame's ``beats_out`` output beats
    of ``nbytes(out_width)`` bytes each (least significant first, unused top bits 0); then
    ``status`` (:data:`STATUS`); then the CRC-16 over all of these. The status comes last so
    that a fault noticed while the outputs were sent still makes the reply ``fault``; a host
    uses the outputs only when the status is ``ok``.

Every non-empty request gets exactly one reply, in order. A request is answered ``ok`` only if
its body had exactly ``1 + beats_in * nbytes(in_width) + 2`` bytes, its CRC matched, no UART
framing error, overrun or invalid escape happened while it arrived, and the accelerator never
broke its framing (``fault``). Otherwise the reply carries the reason and no output: a
corrupted or truncated request never gets a wrong answer.

The input bytes reach the accelerator as they arrive (no frame buffer); a request shorter than
a frame is completed with zero bytes so the accelerator stays aligned, and the outputs of any
frame not answered ``ok`` are dropped. A UART cannot be stalled: a byte that arrives while the
link pads a short frame or waits for the accelerator overruns, and the next reply says
``line_error``; the host keeps the link fed one request at a time, or a few (see
``hwgen run``).
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import crc, data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .stream import check_framing, framed_signature, rejecting

__all__ = [
    "CRC",
    "END",
    "ESC",
    "ESC_END",
    "ESC_ESC",
    "PROTOCOL_VERSION",
    "STATUS",
    "HostLink",
    "SLIPEncoder",
    "nbytes",
]

PROTOCOL_VERSION = 1
END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
#: Checksum of requests and replies (CRC-16/IBM-SDLC, appended least significant byte first).
CRC = crc.catalog.CRC16_IBM_SDLC
#: Reply status codes.
STATUS = {"ok": 0, "bad_crc": 1, "bad_length": 2, "line_error": 3, "fault": 4}
#: Requests whose replies may wait at once (more stall the receiver, and the UART overruns).
VERDICTS = 4


def _esc_start(escaped, byte):
    """The byte opens an escape (an ``ESC`` not itself escaped)."""
    return ~escaped & (byte == ESC)


def nbytes(width: int) -> int:
    """Bytes per beat of ``width`` bits on the host link (``ceil(width / 8)``)."""
    return (width + 7) // 8


def _check_positive(name, value):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be a positive integer, not {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value}")


class SLIPEncoder(wiring.Component):
    """Escapes a byte stream for SLIP; bytes marked ``raw`` (the ``END`` delimiters) pass as
    they are.

    Members
    -------
    i : In(stream.Signature({"byte": 8, "raw": 1}))
        ``ready`` follows ``o.ready`` except in the cycle that sends the second byte of an
        escape.
    o : Out(stream.Signature(unsigned(8)))
        Combinational from ``i`` (no latency); one extra beat per escaped byte.
    """

    def __init__(self):
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"byte": 8, "raw": 1}))),
            "o": Out(stream.Signature(unsigned(8))),
        })

    def elaborate(self, platform):
        m = Module()
        second  = Signal()
        pending = Signal(8)
        byte    = self.i.payload.byte
        special = ~self.i.payload.raw & ((byte == END) | (byte == ESC))
        with m.If(second):
            m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(pending)]
            with m.If(self.o.ready):
                m.d.sync += second.eq(0)
        with m.Else():
            m.d.comb += [
                self.o.valid.eq(self.i.valid),
                self.o.payload.eq(Mux(special, ESC, byte)),
                self.i.ready.eq(self.o.ready),
            ]
            with m.If(self.i.valid & self.o.ready & special):
                m.d.sync += [second.eq(1), pending.eq(Mux(byte == END, ESC_END, ESC_ESC))]
        return m


class HostLink(wiring.Component):
    """The protocol end on the board: decodes requests into accelerator beats and encodes the
    accelerator's outputs into replies (see the module docstring for the protocol).

    Parameters
    ----------
    in_width, out_width : int
        Widths of an accelerator input and output beat.
    beats_in, beats_out : int
        Beats per frame in and out.

    Members
    -------
    rx : In(stream.Signature(unsigned(8)))
        Bytes from the host (:class:`~hwgen.hw.uart.UARTRx` ``o``). ``ready`` is low while an
        assembled beat waits for ``beats_o.ready``, while a short frame is padded, and on an
        ``END`` while :data:`VERDICTS` requests already wait for their replies.
    line_error : In(1)
        Pulse: a UART framing error or overrun; the request in progress is answered
        ``line_error``.
    beats_o : Out(framed_signature(in_width))
        Input beats to the accelerator, valid in the cycle after a beat's last byte (latency
        1); ``last`` on every ``beats_in``-th beat.
    beats_i : In(framed_signature(out_width))
        Output beats of the accelerator, taken only while a reply is being sent.
    tx : Out(stream.Signature(unsigned(8)))
        Reply bytes (:class:`~hwgen.hw.uart.UARTTx` ``i``).
    fault : In(1)
        Sticky accelerator fault (its input framing check): replies say ``fault``.
    misframed : Out(1)
        Sticky: the accelerator's output ``last`` disagreed with the ``beats_out`` count
        (the link then answers ``fault`` too).
    replied_ok, replied_error : Out(1)
        Pulse when a reply starts, by its status (for a status LED).
    """

    def __init__(self, in_width: int, out_width: int, beats_in: int, beats_out: int):
        with rejecting(self):
            for name, value in [("in_width", in_width), ("out_width", out_width),
                                ("beats_in", beats_in), ("beats_out", beats_out)]:
                _check_positive(name, value)
        self.in_width  = in_width
        self.out_width = out_width
        self.beats_in  = beats_in
        self.beats_out = beats_out
        #: Input bytes per request (between tag and CRC).
        self.frame_bytes = beats_in * nbytes(in_width)
        super().__init__({
            "rx":            In(stream.Signature(unsigned(8))),
            "line_error":    In(1),
            "beats_o":       Out(framed_signature(in_width)),
            "beats_i":       In(framed_signature(out_width)),
            "tx":            Out(stream.Signature(unsigned(8))),
            "fault":         In(1),
            "misframed":     Out(1),
            "replied_ok":    Out(1),
            "replied_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n_frame = self.frame_bytes
        body    = 1 + n_frame + 2  # tag, input bytes, CRC

        # --- request side ---------------------------------------------------------------
        m.submodules.rx_crc = rx_crc = CRC(8).create()
        count    = Signal(range(body + 2))  # body bytes so far; body + 1 means "too long"
        escaped  = Signal()
        line_bad = Signal()
        pad      = Signal(range(n_frame + 1))
        # Verdicts wait here for their replies, so that a burst of short (bad) requests does
        # not stall the receiver; held in registers (asynchronous read: never block RAM).
        m.submodules.verdicts = verdicts = SyncFIFO(width=16, depth=VERDICTS)
        verdict = data.View(data.StructLayout({"tag": 8, "status": 8}), verdicts.r_data)
        new_verdict = data.View(data.StructLayout({"tag": 8, "status": 8}), verdicts.w_data)
        verdict_valid = verdicts.r_rdy
        verdict_taken = verdicts.r_en
        rx_tag   = Signal(8)  # apart from ``verdict``: a reply may still be waiting for it

        # Input beat assembly: bytes shift in from the top, so after n bytes the first one
        # is least significant.
        n_in     = nbytes(self.in_width)
        assembly = Signal(8 * n_in)
        got      = Signal(range(n_in + 1))
        beat_in  = Signal(range(self.beats_in))
        feed      = Signal()
        feed_byte = Signal(8)
        m.d.comb += [
            self.beats_o.payload.data.eq(assembly[:self.in_width]),
            self.beats_o.payload.last.eq(beat_in == self.beats_in - 1),
        ]
        with m.If(feed):
            m.d.sync += assembly.eq((assembly >> 8) | (feed_byte << (8 * (n_in - 1))))
            with m.If(got == n_in - 1):
                m.d.sync += [got.eq(0), self.beats_o.valid.eq(1)]
            with m.Else():
                m.d.sync += got.eq(got + 1)
        with m.If(self.beats_o.valid & self.beats_o.ready):
            m.d.sync += [self.beats_o.valid.eq(0),
                         beat_in.eq(Mux(beat_in == self.beats_in - 1, 0, beat_in + 1))]

        byte      = self.rx.payload
        is_end    = ~escaped & (byte == END)
        can_feed  = ~self.beats_o.valid
        # Only bytes that go to the accelerator wait for it, and only an END that writes a
        # verdict (escaped or not) waits for room in the queue: a UART cannot be stalled.
        closes    = (byte == END) & (count != 0)
        feeds     = ~(byte == END) & ~_esc_start(escaped, byte) & (count >= 1) & \
                    (count <= n_frame)
        m.d.comb += self.rx.ready.eq((pad == 0) & ~(feeds & ~can_feed)
                                     & ~(closes & ~verdicts.w_rdy))

        with m.If(self.line_error):
            m.d.sync += line_bad.eq(1)
        with m.If(pad != 0):
            # Complete a short frame with zeros so the accelerator stays aligned.
            with m.If(can_feed):
                m.d.comb += [feed.eq(1), feed_byte.eq(0)]
                m.d.sync += pad.eq(pad - 1)
        with m.Elif(self.rx.valid & self.rx.ready):
            with m.If(is_end | (escaped & (byte == END))):
                # End of a packet (an END after ESC also ends it, as an invalid escape).
                bad_escape = escaped
                status = Mux(line_bad | self.line_error | bad_escape, STATUS["line_error"],
                         Mux(count != body, STATUS["bad_length"],
                         Mux(~rx_crc.match_detected, STATUS["bad_crc"], STATUS["ok"])))
                with m.If(count != 0):
                    m.d.comb += [new_verdict.tag.eq(rx_tag), new_verdict.status.eq(status),
                                 verdicts.w_en.eq(1)]
                    with m.If(count <= n_frame):
                        m.d.sync += pad.eq(n_frame + 1 - count)
                m.d.sync += [count.eq(0), escaped.eq(0), line_bad.eq(0)]
                m.d.comb += rx_crc.start.eq(1)
            with m.Elif(_esc_start(escaped, byte)):
                m.d.sync += escaped.eq(1)
            with m.Else():
                value = Signal(8)
                m.d.comb += value.eq(byte)
                with m.If(escaped):
                    m.d.sync += escaped.eq(0)
                    with m.If(byte == ESC_END):
                        m.d.comb += value.eq(END)
                    with m.Elif(byte == ESC_ESC):
                        m.d.comb += value.eq(ESC)
                    with m.Else():
                        m.d.sync += line_bad.eq(1)
                with m.If(count != body + 1):
                    m.d.sync += count.eq(count + 1)
                with m.If(count < body):
                    m.d.comb += [rx_crc.valid.eq(1), rx_crc.data.eq(value)]
                with m.If(count == 0):
                    m.d.sync += rx_tag.eq(value)
                with m.If((count >= 1) & (count <= n_frame)):
                    m.d.comb += [feed.eq(1), feed_byte.eq(value)]

        # --- reply side -----------------------------------------------------------------
        m.submodules.tx_crc = tx_crc = CRC(8).create()
        m.submodules.slip = slip = SLIPEncoder()
        wiring.connect(m, slip.o, wiring.flipped(self.tx))

        n_out   = nbytes(self.out_width)
        tag     = Signal(8)
        status  = Signal(8)
        beats   = Signal(range(self.beats_out + 1))  # output beats still to take
        sending = Signal(8 * n_out)
        left    = Signal(range(n_out + 1))           # bytes of ``sending`` still to send
        emit      = slip.i
        emitted   = emit.valid & emit.ready
        taken     = self.beats_i.valid & self.beats_i.ready
        check_framing(m, taken, self.beats_i.payload.last, self.beats_out, self.misframed)
        m.d.comb += [tx_crc.data.eq(emit.payload.byte),
                     tx_crc.valid.eq(emitted & ~emit.payload.raw)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(verdict_valid):
                    m.d.comb += [verdict_taken.eq(1), tx_crc.start.eq(1)]
                    m.d.sync += [tag.eq(verdict.tag), status.eq(verdict.status),
                                 beats.eq(self.beats_out)]
                    m.next = "START"
            with m.State("START"):
                m.d.comb += [emit.valid.eq(1), emit.payload.byte.eq(END),
                             emit.payload.raw.eq(1)]
                with m.If(emit.ready):
                    m.next = "TAG"
            with m.State("TAG"):
                m.d.comb += [emit.valid.eq(1), emit.payload.byte.eq(tag)]
                with m.If(emit.ready):
                    m.next = "OUTPUT"
            with m.State("OUTPUT"):
                # Take the frame's output beats; send them only for a good request.
                ok = status == STATUS["ok"]
                with m.If(left != 0):
                    m.d.comb += [emit.valid.eq(1), emit.payload.byte.eq(sending[:8])]
                    with m.If(emit.ready):
                        m.d.sync += [sending.eq(sending >> 8), left.eq(left - 1)]
                with m.Elif(beats != 0):
                    m.d.comb += self.beats_i.ready.eq(1)
                    with m.If(self.beats_i.valid):
                        m.d.sync += [sending.eq(self.beats_i.payload.data),
                                     left.eq(Mux(ok, n_out, 0)), beats.eq(beats - 1)]
                with m.Else():
                    # The status follows the outputs, so a fault seen while they were
                    # taken still turns an ``ok`` into ``fault``.
                    faulty = self.fault | self.misframed
                    with m.If(faulty & ok):
                        m.d.sync += status.eq(STATUS["fault"])
                    with m.If(ok & ~faulty):
                        m.d.comb += self.replied_ok.eq(1)
                    with m.Else():
                        m.d.comb += self.replied_error.eq(1)
                    m.next = "STATUS"
            with m.State("STATUS"):
                m.d.comb += [emit.valid.eq(1), emit.payload.byte.eq(status)]
                with m.If(emit.ready):
                    m.next = "CRC_LO"
            with m.State("CRC_LO"):
                m.d.comb += [emit.valid.eq(1), emit.payload.byte.eq(tx_crc.crc[:8])]
                with m.If(emit.ready):
                    m.d.sync += sending.eq(tx_crc.crc[8:])
                    m.next = "CRC_HI"
            with m.State("CRC_HI"):
                m.d.comb += [emit.valid.eq(1), emit.payload.byte.eq(sending[:8])]
                with m.If(emit.ready):
                    m.next = "FINISH"
            with m.State("FINISH"):
                m.d.comb += [emit.valid.eq(1), emit.payload.byte.eq(END),
                             emit.payload.raw.eq(1)]
                with m.If(emit.ready):
                    m.next = "IDLE"
        return m
