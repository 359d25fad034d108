"""Host link: bytes from a serial port into accelerator beats, and output beats back to bytes.

Byte protocol (minimal; the framing protocol with error replies comes later)
----------------------------------------------------------------------------
Host to board
    A frame is ``beats_in`` input beats. Each beat is ``ceil(in_width / 8)`` bytes, least
    significant byte first; bits above ``in_width`` in the last byte are ignored. Beats are
    numbered by the link itself: ``last`` is set on every ``beats_in``-th beat, so a frame
    starts right after the previous one and no header or delimiter is sent.
Board to host
    Every output beat is sent as ``ceil(out_width / 8)`` bytes, least significant byte first
    (unused top bits are 0): a frame's reply is ``beats_out * ceil(out_width / 8)`` bytes.
    The link does not send the accelerator's ``last`` flag; it counts output beats and sets
    the sticky ``misframed`` flag if ``last`` arrives on another beat than the
    ``beats_out``-th one (or is missing on it).

There is no resynchronisation: a lost or extra byte shifts every later beat. Reset the board
(or, later, use the framed protocol) to recover.
"""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .stream import check_framing, framed_signature, rejecting

__all__ = ["HostLink", "nbytes"]


def nbytes(width: int) -> int:
    """Bytes per beat of ``width`` bits on the host link (``ceil(width / 8)``)."""
    return (width + 7) // 8


def _check_positive(name, value):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be a positive integer, not {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value}")


class HostLink(wiring.Component):
    """Assembles little-endian bytes into framed beats and splits output beats into bytes.

    See the module docstring for the byte protocol.

    Parameters
    ----------
    in_width : int
        Width of an accelerator input beat (``W_in``).
    out_width : int
        Width of an accelerator output beat (``W_out``).
    beats_in : int
        Input beats per frame; ``last`` is set on the ``beats_in``-th beat.
    beats_out : int
        Output beats per frame; used only to check the accelerator's ``last``.

    Members
    -------
    rx : In(stream.Signature(unsigned(8)))
        Bytes from the host (e.g. :class:`~hwgen.hw.uart.UARTRx` ``o``). ``ready`` is high
        while the beat being assembled is not complete, i.e. low only while a complete beat
        waits for ``beats_o.ready``.
    beats_o : Out(framed_signature(in_width))
        Input beats to the accelerator. Valid in the cycle after the beat's last byte is
        accepted (latency 1); holds until the transfer.
    beats_i : In(framed_signature(out_width))
        Output beats of the accelerator. ``ready`` is high while no beat is being sent
        (a register): one beat is taken, then ``nbytes(out_width)`` bytes go out on ``tx``.
    tx : Out(stream.Signature(unsigned(8)))
        Bytes to the host (e.g. :class:`~hwgen.hw.uart.UARTTx` ``i``), valid from the cycle
        after a beat is taken; ``valid`` does not depend on ``ready``.
    misframed : Out(1)
        Sticky: the accelerator's output ``last`` disagreed with the ``beats_out`` count.
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
        super().__init__({
            "rx":        In(stream.Signature(unsigned(8))),
            "beats_o":   Out(framed_signature(in_width)),
            "beats_i":   In(framed_signature(out_width)),
            "tx":        Out(stream.Signature(unsigned(8))),
            "misframed": Out(1),
        })

    def elaborate(self, platform):
        m = Module()

        # Host to accelerator: shift bytes in from the top, so after n bytes the first byte
        # sits in the least significant position.
        n_in     = nbytes(self.in_width)
        assembly = Signal(8 * n_in)
        got      = Signal(range(n_in + 1))
        beat_in  = Signal(range(self.beats_in))

        m.d.comb += [
            self.rx.ready.eq(~self.beats_o.valid),
            self.beats_o.payload.data.eq(assembly[:self.in_width]),
            self.beats_o.payload.last.eq(beat_in == self.beats_in - 1),
        ]
        with m.If(self.rx.valid & self.rx.ready):
            m.d.sync += assembly.eq((assembly >> 8) | (self.rx.payload << (8 * (n_in - 1))))
            with m.If(got == n_in - 1):
                m.d.sync += [got.eq(0), self.beats_o.valid.eq(1)]
            with m.Else():
                m.d.sync += got.eq(got + 1)
        with m.If(self.beats_o.valid & self.beats_o.ready):
            m.d.sync += self.beats_o.valid.eq(0)
            with m.If(beat_in == self.beats_in - 1):
                m.d.sync += beat_in.eq(0)
            with m.Else():
                m.d.sync += beat_in.eq(beat_in + 1)

        # Accelerator to host: take one beat, send its bytes least significant first.
        n_out    = nbytes(self.out_width)
        sending  = Signal(8 * n_out)
        left     = Signal(range(n_out + 1))

        m.d.comb += [
            self.beats_i.ready.eq(left == 0),
            self.tx.valid.eq(left != 0),
            self.tx.payload.eq(sending[:8]),
        ]
        taken = self.beats_i.valid & self.beats_i.ready
        with m.If(taken):
            m.d.sync += [sending.eq(self.beats_i.payload.data), left.eq(n_out)]
        check_framing(m, taken, self.beats_i.payload.last, self.beats_out, self.misframed)
        with m.If(self.tx.valid & self.tx.ready):
            m.d.sync += [sending.eq(sending >> 8), left.eq(left - 1)]
        return m
