"""A small accelerator-shaped top for testing the Verilator runner.

``FrameSum`` accepts ``beats_in`` input beats per frame, spends ``extra`` cycles "computing", then
emits ``beats_out`` beats: beat ``k`` carries ``(sum of the frame's input data + k) mod
2**out_width``. It holds one frame at a time, so (with ``ready`` always high)

* cycles per frame = ``beats_in + extra + beats_out``
* latency (first input transfer to first output transfer) = ``beats_in + extra``.

``frame_error`` is set (sticky) when an input ``last`` disagrees with the beat count.
"""

from __future__ import annotations

import numpy as np
from amaranth.back import verilog
from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


def _beat(width: int) -> data.StructLayout:
    return data.StructLayout({"data": unsigned(width), "last": 1})


class FrameSum(wiring.Component):
    def __init__(self, in_width: int, out_width: int, beats_in: int, beats_out: int, extra: int):
        self.in_width, self.out_width = in_width, out_width
        self.beats_in, self.beats_out, self.extra = beats_in, beats_out, extra
        super().__init__({
            "i": In(stream.Signature(_beat(in_width))),
            "o": Out(stream.Signature(_beat(out_width))),
            "frame_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        acc = Signal(self.out_width)
        count = Signal(range(max(self.beats_in, self.beats_out, self.extra) + 1))
        with m.FSM():
            with m.State("IN"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    at_end = count == self.beats_in - 1
                    m.d.sync += acc.eq(acc + self.i.payload.data)
                    with m.If(self.i.payload.last != at_end):
                        m.d.sync += self.frame_error.eq(1)
                    m.d.sync += count.eq(count + 1)
                    with m.If(at_end):
                        m.d.sync += count.eq(0)
                        m.next = "BUSY" if self.extra else "OUT"
            if self.extra:
                with m.State("BUSY"):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == self.extra - 1):
                        m.d.sync += count.eq(0)
                        m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += [
                    self.o.valid.eq(1),
                    self.o.payload.data.eq(acc + count),
                    self.o.payload.last.eq(count == self.beats_out - 1),
                ]
                with m.If(self.o.ready):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == self.beats_out - 1):
                        m.d.sync += [count.eq(0), acc.eq(0)]
                        m.next = "IN"
        return m

    def to_verilog(self, name: str = "frame_sum") -> str:
        return verilog.convert(self, name=name, emit_src=False)

    def expected(self, inputs: np.ndarray) -> np.ndarray:
        """Golden outputs ``[frames, beats_out]`` (Python ints) for packed ``inputs``."""
        mask = (1 << self.out_width) - 1
        out = np.zeros((len(inputs), self.beats_out), dtype=object)
        for f, row in enumerate(np.asarray(inputs, dtype=object).tolist()):
            s = sum(int(v) for v in row)
            for k in range(self.beats_out):
                out[f, k] = (s + k) & mask
        return out


class Stuck(FrameSum):
    """Like ``FrameSum`` but never raises ``o.valid`` (a deadlock)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.o.valid.eq(0)
        return m
