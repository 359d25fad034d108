"""A stream FIFO between layers, its memory placed as the compiler's memory plan says."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hwgen.compiler import dataflow, memory

from .stream import OutputBuffer, beat_signature, check_layer, rejecting

__all__ = ["FIFO", "memory_shapes"]


def _validate(layer):
    check_layer(layer, dataflow.FIFO, ("n", "bits", "lanes", "depth"))


def memory_shapes(layer) -> list[tuple[str, int, int]]:
    """``[("fifo", lanes*bits, depth - 1)]``: one entry lives in the output register and the
    rest in a memory; ``[]`` for ``depth <= 2``, held in registers."""
    _validate(layer)
    return [(spec.purpose, spec.width, spec.depth) for spec in memory.plan(layer)]


class FIFO(wiring.Component):
    """``depth`` beats of ``lanes * bits``: a memory with a synchronous read port (so it maps
    to block RAM on iCE40) followed by an output register, as in Amaranth's
    :class:`~amaranth.lib.fifo.SyncFIFOBuffered`, with the memory's ``ram_style`` taken from
    the compiler's memory plan.

    Parameters
    ----------
    layer : :class:`hwgen.compiler.dataflow.FIFO`

    Members
    -------
    i : In(stream.Signature(unsigned(lanes * bits)))
        ``ready`` while not full.
    o : Out(stream.Signature(unsigned(lanes * bits)))

    A memory-backed FIFO of depth 2 or less would pass only one beat every other cycle, so
    ``depth <= 2`` uses a two-entry register buffer (:class:`~hwgen.hw.stream.OutputBuffer`)
    instead.

    Throughput: one beat per cycle (``layer.cycles`` per frame). Latency (:attr:`latency`):
    2 cycles (1 when ``depth <= 2``) from an input transfer into an empty FIFO to its
    output transfer. Back-pressure: holds up to ``max(depth, 2)`` beats; ``i.ready`` and
    ``o.valid`` depend only on registered state.
    """

    def __init__(self, layer):
        with rejecting(self):
            _validate(layer)
        self.layer = layer
        width = layer.lanes * layer.bits
        super().__init__({"i": In(beat_signature(width)), "o": Out(beat_signature(width))})

    @property
    def latency(self) -> int:
        """2, or 1 when ``depth <= 2``."""
        return 1 if self.layer.depth <= 2 else 2

    @property
    def memory_shapes(self) -> list[tuple[str, int, int]]:
        return memory_shapes(self.layer)

    def elaborate(self, platform):
        m = Module()
        if self.layer.depth <= 2:
            m.submodules.buffer = buf = OutputBuffer(len(self.i.payload))
            wiring.connect(m, wiring.flipped(self.i), buf.i)
            wiring.connect(m, buf.o, wiring.flipped(self.o))
            return m
        (spec,) = memory.plan(self.layer)
        inner = spec.depth
        m.submodules.storage = storage = Memory(shape=spec.width, depth=inner, init=[],
                                                attrs=spec.attrs)
        w_port = storage.write_port()
        r_port = storage.read_port(domain="sync")
        level = Signal(range(inner + 1))
        produce, consume = Signal(range(inner)), Signal(range(inner))
        do_write = self.i.valid & self.i.ready
        # Read from the memory into the output register whenever it is empty or emptying.
        do_read = (level != 0) & (~self.o.valid | self.o.ready)
        m.d.comb += [
            self.i.ready.eq(level != inner),
            w_port.addr.eq(produce), w_port.data.eq(self.i.payload), w_port.en.eq(do_write),
            r_port.addr.eq(consume), r_port.en.eq(do_read),
            self.o.payload.eq(r_port.data),
        ]
        with m.If(do_write):
            m.d.sync += produce.eq(Mux(produce == inner - 1, 0, produce + 1))
        with m.If(do_read):
            m.d.sync += consume.eq(Mux(consume == inner - 1, 0, consume + 1))
        with m.If(do_write & ~do_read):
            m.d.sync += level.eq(level + 1)
        with m.Elif(do_read & ~do_write):
            m.d.sync += level.eq(level - 1)
        with m.If(do_read):
            m.d.sync += self.o.valid.eq(1)
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
