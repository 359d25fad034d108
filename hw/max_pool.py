"""Max-pool: the largest element of each channel over each window of a sliding window."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwgen.compiler import dataflow

from .stream import OutputBuffer, beat_signature, check_layer, lane, rejecting

__all__ = ["MaxPool", "first_frame_times", "memory_shapes"]


def _validate(layer):
    check_layer(layer, dataflow.MaxPool, ("pixels", "window", "c", "bits", "lanes"))
    layer.check_folding()


def memory_shapes(layer) -> list[tuple[str, int, int]]:
    """MaxPool keeps its running maxima in registers: no memory."""
    _validate(layer)
    return []


def first_frame_times(layer, arrivals) -> list[int]:
    """The transfer cycle of each output beat of the first frame into an idle
    :class:`MaxPool`, its output always ready.

    Parameters
    ----------
    layer : :class:`hwgen.compiler.dataflow.MaxPool`
    arrivals : list of int
        The transfer cycle of each of the frame's ``pixels * window * c / lanes`` input beats
        (non-decreasing; the block takes at most one per cycle, so a beat offered the same
        cycle as the previous one is taken a cycle later).

    Returns
    -------
    list of int
        ``pixels * c / lanes`` cycles: output beat ``g`` of a window leaves one cycle after
        the transfer of that window's last pixel's beat ``g``.
    """
    _validate(layer)
    groups = layer.c // layer.lanes
    beats_in = layer.pixels * layer.window * groups
    arrivals = [int(t) for t in arrivals]
    if len(arrivals) != beats_in:
        raise ValueError(f"{layer.name}: {len(arrivals)} arrival times for a frame of "
                         f"{beats_in} input beats")
    taken = []
    for t in arrivals:
        taken.append(max(t, taken[-1] + 1) if taken else t)
    per_window = layer.window * groups
    return [taken[p * per_window + (layer.window - 1) * groups + g] + 1
            for p in range(layer.pixels) for g in range(groups)]


class MaxPool(wiring.Component):
    """The channel-wise maximum over each window of ``window`` pixels of ``c`` channels,
    ``lanes`` channels per beat (``lanes`` divides ``c``).

    A window arrives as ``window * c / lanes`` beats in (pixel, channel group) order. A ring
    of ``c / lanes`` beat registers holds the running maxima: its head is always the current
    channel group's, so each input beat is compared lane by lane with the head (signed or
    unsigned per ``layer.signed``; on a binary stream bit 1 is +1, the larger) and the result
    joins the tail. The first pixel of a window loads its beats as they are; on the last
    pixel the maxima go to a two-entry :class:`~hwgen.hw.stream.OutputBuffer` instead.

    Parameters
    ----------
    layer : :class:`hwgen.compiler.dataflow.MaxPool`

    Members
    -------
    i : In(stream.Signature(unsigned(lanes * bits)))
        ``pixels * window * c / lanes`` beats per frame. ``ready`` is high except on a
        window's last pixel while the output buffer is full (registered state only, no path
        from ``o.ready``).
    o : Out(stream.Signature(unsigned(lanes * bits)))
        ``pixels * c / lanes`` beats per frame; ``valid`` is registered.

    Throughput: one input beat per cycle, ``layer.cycles = pixels * window * c / lanes``
    cycles per frame. Latency (:attr:`latency`): ``(window - 1) * c / lanes + 1`` cycles
    from the first input transfer to the first output transfer. Back-pressure: the input
    stalls on a window's last pixel while the output buffer is full.
    """

    def __init__(self, layer):
        with rejecting(self):
            _validate(layer)
        self.layer = layer
        self.groups = layer.c // layer.lanes
        width = layer.lanes * layer.bits
        super().__init__({"i": In(beat_signature(width)), "o": Out(beat_signature(width))})

    @property
    def latency(self) -> int:
        """``(window - 1) * c / lanes + 1``."""
        return (self.layer.window - 1) * self.groups + 1

    memory_shapes = property(lambda self: [])

    def elaborate(self, platform):
        m = Module()
        layer, groups = self.layer, self.groups
        bits, signed, width = layer.bits, layer.signed, layer.lanes * layer.bits
        m.submodules.obuf = obuf = OutputBuffer(width)
        wiring.connect(m, obuf.o, wiring.flipped(self.o))

        g = Signal(range(groups))
        p = Signal(range(layer.window))
        first = p == 0
        last = p == layer.window - 1
        ring = [Signal(width, name=f"max{k}") for k in range(groups)]

        beat = self.i.payload
        maxima = []
        for j in range(layer.lanes):
            a, b = lane(ring[0], j, bits, signed), lane(beat, j, bits, signed)
            maxima.append(Mux(b > a, b, a).as_unsigned())
        result = Signal(width)
        m.d.comb += result.eq(Mux(first, beat, Cat(*maxima)))

        m.d.comb += [
            self.i.ready.eq(obuf.i.ready | ~last),
            obuf.i.valid.eq(self.i.valid & last),
            obuf.i.payload.eq(result),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [ring[k].eq(ring[k + 1]) for k in range(groups - 1)]
            m.d.sync += ring[-1].eq(result)
            m.d.sync += g.eq(Mux(g == groups - 1, 0, g + 1))
            with m.If(g == groups - 1):
                m.d.sync += p.eq(Mux(last, 0, p + 1))
        return m
