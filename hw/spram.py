"""The iCE40 UP5K's single-port RAM (SPRAM): four 16K x 16 blocks beside the block RAMs.

An Amaranth :class:`~amaranth.lib.memory.Memory` always carries initial contents, which SPRAM
cannot have, so Yosys never maps one there; :class:`SPRAM` instantiates ``SB_SPRAM256KA``
itself, ``ceil(width / 16)`` blocks
side by side, whenever it is elaborated for a platform: a board's, or :data:`PRIMITIVES` when
hwgen writes the Verilog it simulates (Verilator then runs Yosys's own simulation model of the
cell, see :mod:`hwgen.sim.primitives`). Without a platform (Amaranth's simulator) it is a
behavioural memory with the same read timing.
"""

import math

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .stream import rejecting

__all__ = ["PRIMITIVES", "SPRAM", "Primitives"]

WIDTH, DEPTH = 16, 16384


class Primitives:
    """A platform stand-in for Verilog generation: elaborate FPGA primitives, not models."""


#: Pass as ``platform`` to Verilog conversion to get ``SB_SPRAM256KA`` instances.
PRIMITIVES = Primitives()


class SPRAM(wiring.Component):
    """A single-port RAM of ``width`` x ``depth`` words in SPRAM blocks.

    Members
    -------
    addr : In(range(depth))
    wdata : In(width)
    we : In(1)
        Write ``wdata`` at ``addr`` on this clock edge.
    re : In(1)
        Read ``addr`` on this clock edge (ignored while ``we``).
    rdata : Out(width)
        The word read on the last edge with ``re & ~we``; it holds while ``re`` is low (like a
        block RAM read port with ``en``) and is undefined after a write (the behavioural model
        then shows a junk pattern, so a design that used it fails in simulation).

    Latency: one cycle from ``addr`` to ``rdata``; a read or a write every cycle.
    """

    def __init__(self, width: int, depth: int):
        with rejecting(self):
            if not isinstance(width, int) or width < 1:
                raise ValueError(f"SPRAM: width={width!r} must be a positive integer")
            if not isinstance(depth, int) or not 1 <= depth <= DEPTH:
                raise ValueError(f"SPRAM: depth={depth!r} must be an integer in 1..{DEPTH}")
        self.width, self.depth = width, depth
        super().__init__({
            "addr": In(range(depth)), "wdata": In(width), "we": In(1), "re": In(1),
            "rdata": Out(width),
        })

    @property
    def blocks(self) -> int:
        return math.ceil(self.width / WIDTH)

    def elaborate(self, platform):
        m = Module()
        if platform is None:
            m.submodules.mem = mem = Memory(shape=unsigned(self.width), depth=self.depth,
                                            init=[])
            w, r = mem.write_port(), mem.read_port()
            written = Signal()
            with m.If(self.we):
                m.d.sync += written.eq(1)
            with m.Elif(self.re):
                m.d.sync += written.eq(0)
            junk = Const(int("10" * self.width, 2) >> self.width, self.width)
            m.d.comb += [w.addr.eq(self.addr), w.data.eq(self.wdata), w.en.eq(self.we),
                         r.addr.eq(self.addr), r.en.eq(self.re & ~self.we),
                         self.rdata.eq(Mux(written, junk, r.data))]
            return m
        # Drive all 14 address bits (a depth-1 buffer has a 0-bit address).
        address = Cat(self.addr, Const(0, 14 - len(self.addr)))
        for i in range(self.blocks):
            lo, hi = i * WIDTH, min((i + 1) * WIDTH, self.width)
            data_in = Const(0, WIDTH) if lo >= self.width else self.wdata[lo:hi]
            m.submodules[f"block{i}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=address, i_DATAIN=data_in, i_MASKWREN=Const(0b1111, 4),
                i_WREN=self.we, i_CHIPSELECT=self.we | self.re, i_CLOCK=ClockSignal(),
                i_STANDBY=Const(0, 1), i_SLEEP=Const(0, 1), i_POWEROFF=Const(1, 1),
                o_DATAOUT=self.rdata[lo:hi])
        return m
