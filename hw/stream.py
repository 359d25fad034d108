"""Stream helpers shared by the hardware blocks.

Streams are :mod:`amaranth.lib.stream` streams: a beat transfers when ``valid`` and ``ready``
are both high, ``valid`` never depends on ``ready`` and the payload holds until the transfer.
"""

from contextlib import contextmanager

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["OutputBuffer", "beat_signature", "framed_signature", "lane", "pack"]


def beat_signature(width: int) -> stream.Signature:
    """The stream between layers: a packed beat of ``width`` bits, no framing."""
    return stream.Signature(unsigned(width))


def framed_signature(width: int) -> stream.Signature:
    """The top-level stream: ``{"data": unsigned(width), "last": 1}`` (``last`` on the final
    beat of a frame; in Verilog the payload has ``data`` in the low bits, ``last`` on top)."""
    return stream.Signature(data.StructLayout({"data": unsigned(width), "last": 1}))


def lane(value, index: int, bits: int, signed: bool):
    """Element ``index`` of a packed beat (element 0 in the least significant bits)."""
    part = value[index * bits:(index + 1) * bits]
    return part.as_signed() if signed else part


def pack(values, bits: int) -> int:
    """Pack Python integers into one beat (two's complement, element 0 in the LSBs)."""
    word = 0
    for k, v in enumerate(values):
        word |= (int(v) & ((1 << bits) - 1)) << (k * bits)
    return word


class OutputBuffer(wiring.Component):
    """A two-entry register FIFO whose ``i.ready`` is a register.

    Blocks use it as their output stage: they advance their whole pipeline on ``i.ready``,
    so no combinational path runs from a downstream ``ready`` into their datapath (this keeps
    ready chains short across a stitched accelerator).

    Parameters
    ----------
    width : int
        Payload width.

    Members
    -------
    i : In(stream.Signature(unsigned(width)))
        ``ready`` is high while fewer than two entries are held; it does not depend on
        ``o.ready`` in the same cycle.
    o : Out(stream.Signature(unsigned(width)))
        Valid one cycle after a write to an empty buffer (latency 1); one beat per cycle.
    """

    def __init__(self, width: int):
        if not isinstance(width, int) or width < 0:
            raise TypeError(f"width must be a non-negative integer, not {width!r}")
        self.width = width
        super().__init__({"i": In(beat_signature(width)), "o": Out(beat_signature(width))})

    def elaborate(self, platform):
        m = Module()
        head = Signal(self.width)
        tail = Signal(self.width)
        count = Signal(range(3))
        push = self.i.valid & self.i.ready
        pop = self.o.valid & self.o.ready
        m.d.comb += [
            self.i.ready.eq(count < 2),
            self.o.valid.eq(count != 0),
            self.o.payload.eq(head),
        ]
        with m.If(push & ~pop):
            m.d.sync += count.eq(count + 1)
        with m.If(pop & ~push):
            m.d.sync += count.eq(count - 1)
        # Head: refilled from the tail, or from the input when it is (or becomes) empty.
        with m.If(pop):
            with m.If(count == 2):
                m.d.sync += head.eq(tail)
            with m.Elif(push):
                m.d.sync += head.eq(self.i.payload)
        with m.Elif(push & (count == 0)):
            m.d.sync += head.eq(self.i.payload)
        with m.If(push & (count == 1) & ~pop):
            m.d.sync += tail.eq(self.i.payload)
        return m


def check_layer(layer, kind, positive_ints=()):
    """Check that ``layer`` is a ``kind`` description whose ``positive_ints`` fields are
    integers of at least 1; raise ``TypeError``/``ValueError`` naming the bad value."""
    if not isinstance(layer, kind):
        raise TypeError(f"layer must be a dataflow.{kind.__name__}, not {layer!r}")
    for what in positive_ints:
        value = getattr(layer, what)
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{layer.name}: {what} must be an integer, not {value!r}")
        if value < 1:
            raise ValueError(f"{layer.name}: {what}={value!r} must be at least 1")


@contextmanager
def rejecting(component):
    """Validate inside this in a component's ``__init__``: a component rejected there was
    never meant to be used, so it must not warn that it was never elaborated."""
    try:
        yield
    except (TypeError, ValueError):
        component._MustUse__silence = True
        raise


def check_framing(m, transfer, last, beats: int, error):
    """Count the beats of ``beats``-beat frames on ``transfer`` and set the sticky ``error``
    whenever ``last`` disagrees with the count (framing is by count; ``last`` only checks)."""
    count = Signal(range(beats))
    with m.If(transfer):
        at_end = count == beats - 1
        with m.If(last != at_end):
            m.d.sync += error.eq(1)
        m.d.sync += count.eq(Mux(at_end, 0, count + 1))
