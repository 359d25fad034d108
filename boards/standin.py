"""A small stand-in with the accelerator's ports, for bringing up a board and its host link.

It exercises what a real accelerator needs on the board: framed streams, back-pressure, block
RAM with initial contents, and ``frame_error``.
"""

import random

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..hw.stream import check_framing, framed_signature

__all__ = ["StandInAccelerator", "XorAccelerator"]

ROM_DEPTH = 256
ROM_WIDTH = 16


class StandInAccelerator(wiring.Component):
    """Echo each input beat, XORed with ROM words it addresses.

    Output beat ``k`` of a frame is ``(data ^ rom_0[a] ^ ... ^ rom_{n-1}[a]) mod 2**out_width``
    where ``data`` is input beat ``k`` and ``a = data mod 256``; ``last`` is copied. Each ROM
    is ``256 x 16`` with seeded random contents, i.e. exactly one iCE40 EBR, so ``n_roms``
    sets the block-RAM count. The input first passes a 4-deep FIFO (held in flip-flops).

    Parameters
    ----------
    in_width, out_width : int
        Beat widths.
    beats : int
        Beats per frame, in and out.
    n_roms : int
        Number of ``256 x 16`` ROMs.
    seed : int
        Seed of the ROM contents.

    Members
    -------
    i : In(framed_signature(in_width))
    o : Out(framed_signature(out_width))
        Latency 2 cycles from an input transfer to ``o.valid`` when not stalled; one beat per
        cycle.
    frame_error : Out(1)
        Sticky: an input ``last`` was not on the ``beats``-th beat of a frame, or was missing.
    """

    def __init__(self, in_width: int, out_width: int, beats: int, n_roms: int = 1, seed=0,
                 writable: bool = False):
        checks = [("in_width", in_width, 1), ("out_width", out_width, 1), ("beats", beats, 1),
                  ("n_roms", n_roms, 0)]
        for name, value, least in checks:
            if not isinstance(value, int) or value < least:
                self._MustUse__silence = True  # never built, so never elaborated
                raise ValueError(f"{name} must be an integer of at least {least}, not {value!r}")
        self.in_width  = in_width
        self.out_width = out_width
        self.beats     = beats
        self.n_roms    = n_roms
        self.writable  = writable
        rng = random.Random(seed)
        self.rom_data = [[rng.getrandbits(ROM_WIDTH) for _ in range(ROM_DEPTH)]
                         for _ in range(n_roms)]
        super().__init__({
            "i":           In(framed_signature(in_width)),
            "o":           Out(framed_signature(out_width)),
            "frame_error": Out(1),
        })

    def model(self, data: int) -> int:
        """Expected output data for one input beat."""
        word = data
        for rom in self.rom_data:
            word ^= rom[data % ROM_DEPTH]
        return word % (1 << self.out_width)

    def elaborate(self, platform):
        m = Module()
        width = self.in_width + 1
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=width, depth=4)

        # Input side: FIFO and the frame check.
        m.d.comb += [
            fifo.w_data.eq(self.i.payload.as_value()),
            fifo.w_en.eq(self.i.valid),
            self.i.ready.eq(fifo.w_rdy),
        ]
        check_framing(m, self.i.valid & self.i.ready, self.i.payload.last, self.beats,
                      self.frame_error)

        # One pipeline stage: ROM reads (synchronous, enabled by advance) and a data register.
        valid   = Signal()
        data    = Signal(self.in_width)
        last    = Signal()
        advance = ~valid | self.o.ready
        head    = fifo.r_data[:self.in_width]
        m.d.comb += fifo.r_en.eq(advance)
        with m.If(advance):
            m.d.sync += [valid.eq(fifo.r_rdy), data.eq(head), last.eq(fifo.r_data[-1])]

        word = data
        for k, init in enumerate(self.rom_data):
            rom = Memory(shape=ROM_WIDTH, depth=ROM_DEPTH, init=init)
            m.submodules[f"rom{k}"] = rom
            port = rom.read_port()
            if self.writable:
                write = rom.write_port()
                m.d.comb += [write.addr.eq(head), write.data.eq(head ^ k), write.en.eq(advance)]
            m.d.comb += [port.addr.eq(head), port.en.eq(advance)]
            word = word ^ port.data
        m.d.comb += [
            self.o.valid.eq(valid),
            self.o.payload.data.eq(word),
            self.o.payload.last.eq(last),
        ]
        return m


class XorAccelerator(wiring.Component):
    """The least an accelerator can be: the XOR of a frame's input beats, sent as
    ``beats_out`` output beats (beat ``k`` is that XOR plus ``k``, truncated or zero-extended
    to ``out_width``). Used to measure what the host link costs on its own: a board top
    around it is the link, the UART, the LED and about ``in_width + out_width`` cells more.

    Members
    -------
    i : In(framed_signature(in_width))
        Always ready except while a frame's outputs are sent.
    o : Out(framed_signature(out_width))
    frame_error : Out(1)
        Sticky: an input ``last`` disagreed with the ``beats_in`` count.
    """

    def __init__(self, in_width: int, out_width: int, beats_in: int, beats_out: int):
        for name, value in (("in_width", in_width), ("out_width", out_width),
                            ("beats_in", beats_in), ("beats_out", beats_out)):
            if not isinstance(value, int) or value < 1:
                self._MustUse__silence = True  # never built, so never elaborated
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self.in_width, self.out_width = in_width, out_width
        self.beats_in, self.beats_out = beats_in, beats_out
        super().__init__({
            "i":           In(framed_signature(in_width)),
            "o":           Out(framed_signature(out_width)),
            "frame_error": Out(1),
        })

    def model(self, beats: list[int]) -> list[int]:
        """Expected output beats for one frame of input beats."""
        word = 0
        for beat in beats:
            word ^= beat
        return [(word + k) % (1 << self.out_width) for k in range(self.beats_out)]

    def elaborate(self, platform):
        m = Module()
        acc  = Signal(self.in_width)
        word = Signal(self.in_width)
        left = Signal(range(self.beats_out + 1))
        step = Signal(range(self.beats_out))
        taken = self.i.valid & self.i.ready
        check_framing(m, taken, self.i.payload.last, self.beats_in, self.frame_error)
        count = Signal(range(self.beats_in))
        m.d.comb += self.i.ready.eq(left == 0)
        with m.If(taken):
            with m.If(count == self.beats_in - 1):
                m.d.sync += [count.eq(0), acc.eq(0), word.eq(acc ^ self.i.payload.data),
                             left.eq(self.beats_out), step.eq(0)]
            with m.Else():
                m.d.sync += [count.eq(count + 1), acc.eq(acc ^ self.i.payload.data)]
        m.d.comb += [
            self.o.valid.eq(left != 0),
            self.o.payload.data.eq(word + step),
            self.o.payload.last.eq(left == 1),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [left.eq(left - 1), step.eq(step + 1)]
        return m
