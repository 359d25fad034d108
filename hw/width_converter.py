"""Width converter: repacks a frame from ``lanes_in`` to ``lanes_out`` elements per beat."""

import math

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwgen.compiler import dataflow

from .stream import beat_signature, check_layer, rejecting

__all__ = ["WidthConverter", "memory_shapes"]


def _validate(layer):
    check_layer(layer, dataflow.WidthConverter, ("n", "bits", "lanes_in", "lanes_out",
                                                 "pixels"))
    if layer.n % layer.pixels:
        raise ValueError(f"{layer.name}: n={layer.n} is not a whole number of "
                         f"{layer.pixels} vectors")


def memory_shapes(layer) -> list[tuple[str, int, int]]:
    """The width converter holds its elements in registers: no memory."""
    _validate(layer)
    return []


class WidthConverter(wiring.Component):
    """Repack frames of ``n`` elements of ``bits`` from ``lanes_in`` to ``lanes_out`` lanes,
    vector by vector (a frame of ``pixels`` vectors of ``v = n // pixels`` elements; below, a
    "frame" is one such vector).

    A shift register of ``lanes_in + lanes_out`` elements, plus ``lanes_in - 1`` when
    ``lanes_in <= lanes_out``: an input beat is taken when its elements fit, an output beat
    leaves when the buffer holds its elements; a frame's last output beat takes only that
    frame's remaining elements (padding lanes driven 0), so frames never mix. ``ready`` comes
    from the registered fill level, which can reach ``lanes_out + lanes_in - 1`` before a beat
    leaves; the extra elements keep an input beat every cycle flowing when the output is ready
    (the schedule :func:`hwgen.hw.top.first_frame` assumes). With ``lanes_in > lanes_out`` the
    output is the bottleneck anyway.

    Parameters
    ----------
    layer : :class:`hwgen.compiler.dataflow.WidthConverter`

    Members
    -------
    i : In(stream.Signature(unsigned(lanes_in * bits)))
        ``ceil(n / lanes_in)`` beats per frame; padding lanes ignored. ``ready`` depends
        only on the fill level (registered state).
    o : Out(stream.Signature(unsigned(lanes_out * bits)))
        ``ceil(n / lanes_out)`` beats per frame; ``valid`` depends only on registered state.

    Throughput: ``max(ceil(v/lanes_in), ceil(v/lanes_out))`` cycles per vector,
    ``layer.cycles`` per frame. Latency (:attr:`latency`): ``ceil(min(lanes_out, v) /
    lanes_in)`` cycles from the first input transfer to the first output transfer.
    Back-pressure: input stalls while the buffer lacks room for a beat.
    """

    def __init__(self, layer):
        with rejecting(self):
            _validate(layer)
        self.layer = layer
        self.n = layer.n // layer.pixels  # elements per vector
        self.beats_in = math.ceil(self.n / layer.lanes_in)
        self.beats_out = math.ceil(self.n / layer.lanes_out)
        li, lo = layer.lanes_in, layer.lanes_out
        self.capacity = li + lo + (li - 1 if li <= lo else 0)
        super().__init__({
            "i": In(beat_signature(layer.lanes_in * layer.bits)),
            "o": Out(beat_signature(layer.lanes_out * layer.bits)),
        })

    @property
    def latency(self) -> int:
        """``ceil(min(lanes_out, v) / lanes_in)``."""
        return math.ceil(min(self.layer.lanes_out, self.n) / self.layer.lanes_in)

    memory_shapes = property(lambda self: [])

    def elaborate(self, platform):
        m = Module()
        layer, C = self.layer, self.capacity
        li, lo, bits = layer.lanes_in, layer.lanes_out, layer.bits
        r_in = self.n - (self.beats_in - 1) * li
        r_out = self.n - (self.beats_out - 1) * lo

        elems = [Signal(bits, name=f"e{i}") for i in range(C)]
        count = Signal(range(C + 1))
        bin_ = Signal(range(self.beats_in))
        bout = Signal(range(self.beats_out))
        last_in = bin_ == self.beats_in - 1
        last_out = bout == self.beats_out - 1
        take = Mux(last_in, r_in, li)   # elements in this input beat
        give = Mux(last_out, r_out, lo)  # elements in this output beat

        m.d.comb += [
            self.i.ready.eq(C - count >= take),
            self.o.valid.eq(count >= give),
            self.o.payload.eq(Cat(*[Mux(last_out & (j >= r_out), 0, elems[j])
                                    for j in range(lo)])),
        ]
        push = self.i.valid & self.i.ready
        pop = self.o.valid & self.o.ready
        with m.If(push):
            m.d.sync += bin_.eq(Mux(last_in, 0, bin_ + 1))
        with m.If(pop):
            m.d.sync += bout.eq(Mux(last_out, 0, bout + 1))

        popped = Mux(pop, give, 0)
        base = Signal(range(C + 1))
        m.d.comb += base.eq(count - popped)
        m.d.sync += count.eq(base + Mux(push, take, 0))
        for i in range(C):
            shift_lo = elems[i + lo] if i + lo < C else 0
            shift_r = elems[i + r_out] if i + r_out < C else 0
            with m.If(pop):
                m.d.sync += elems[i].eq(Mux(last_out, shift_r, shift_lo))
            # Slots past the fill level are don't-care, so all li lanes may be written.
            for lane_ in range(min(li, i + 1)):
                with m.If(push & (base == i - lane_)):
                    m.d.sync += elems[i].eq(self.i.payload[lane_ * bits:(lane_ + 1) * bits])
        return m
