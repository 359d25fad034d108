"""Pad: a constant border around each feature map of a channels-last stream."""

import functools
import operator

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwgen.compiler import dataflow

from .stream import OutputBuffer, beat_signature, check_layer, pack, rejecting

__all__ = ["Pad", "first_frame_times", "lead", "memory_shapes"]


def _validate(layer):
    check_layer(layer, dataflow.Pad, ("h", "w", "c", "bits", "lanes"))
    pads = layer.pads
    if (not isinstance(pads, tuple) or len(pads) != 4
            or any(not isinstance(p, int) or isinstance(p, bool) or p < 0 for p in pads)):
        raise ValueError(f"{layer.name}: pads={pads!r} must be four non-negative integers "
                         f"(top, left, bottom, right)")
    if layer.c % layer.lanes:
        raise ValueError(f"{layer.name}: lanes={layer.lanes!r} must divide the {layer.c} "
                         f"channels")
    lo, hi = dataflow.int_range(layer.bits, layer.signed)
    value = layer.value
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{layer.name}: pad value {value!r} does not fit the {layer.bits}-bit "
                         f"{'signed' if layer.signed else 'unsigned'} stream ([{lo}, {hi}])")


def memory_shapes(layer) -> list[tuple[str, int, int]]:
    """Pad holds only counters: no memory."""
    _validate(layer)
    return []


def lead(layer) -> int:
    """Output beats before the first interior beat: the top border and the first row's left
    border."""
    top, left = layer.pads[0], layer.pads[1]
    return (top * layer.out_w + left) * (layer.c // layer.lanes)


def _interior(layer) -> list[bool]:
    """For each output beat of a frame, whether it carries an input beat."""
    top, left = layer.pads[0], layer.pads[1]
    groups = layer.c // layer.lanes
    return [top <= y < top + layer.h and left <= x < left + layer.w
            for y in range(layer.out_h) for x in range(layer.out_w) for _ in range(groups)]


def first_frame_times(layer, arrivals, start=None) -> list[int]:
    """The transfer cycle of each output beat of the first frame into an idle :class:`Pad`,
    its output always ready.

    Parameters
    ----------
    layer : :class:`hwgen.compiler.dataflow.Pad`
    arrivals : list of int
        The transfer cycle of each of the frame's ``h * w * c / lanes`` input beats
        (non-decreasing). A beat offered before the block can take it is taken when it can
        (one output beat per cycle, in order), so transfer cycles measured in simulation
        come back unchanged.
    start : int, optional
        The block's first idle cycle (the cycle it leaves reset; in simulation the first
        cycle). The block does not wait for input to send a border: the
        ``P = (top * out_w + left) * c / lanes`` border beats before the first interior beat
        enter its output buffer at ``start, start + 1, ...`` and leave one cycle later, and it
        can take the first input beat from ``start + P`` on. By default ``start =
        arrivals[0] - P``, the block became idle just in time for the first input beat
        (exact when the input is offered from the block's first cycle, as in a whole
        accelerator out of reset whose first layer is this pad); the border beats then
        leave at ``arrivals[0] - P + 1, ..., arrivals[0]``, at or before the first input
        transfer.

    Returns
    -------
    list of int
        ``out_h * out_w * c / lanes`` cycles, in the numbering of ``arrivals``: a beat enters
        the output buffer the cycle its input beat transfers (a border beat one cycle after
        the previous beat) and leaves the next cycle.
    """
    _validate(layer)
    arrivals = [int(t) for t in arrivals]
    beats_in = layer.h * layer.w * (layer.c // layer.lanes)
    if len(arrivals) != beats_in:
        raise ValueError(f"{layer.name}: {len(arrivals)} arrival times for a frame of "
                         f"{beats_in} input beats")
    if start is None:
        start = arrivals[0] - lead(layer)
    out, k, push = [], 0, start - 1
    for interior in _interior(layer):
        push += 1
        if interior:
            push = max(push, arrivals[k])
            k += 1
        out.append(push + 1)
    return out


class Pad(wiring.Component):
    """Add a border of ``pads = (top, left, bottom, right)`` pixels, every element ``value``,
    around each ``h x w x c`` feature map (channels-last, ``lanes`` channels per beat).

    Counters walk the output map (pixel ``(y, x)`` in raster order, ``c / lanes`` beats per
    pixel); at an interior pixel the input beat passes through, at a border pixel the block
    sends ``value`` packed in every lane (two's complement, ``bits`` each). Beats go through a
    two-entry :class:`~hwgen.hw.stream.OutputBuffer`. The block never waits for input to send
    border beats: after a frame's last beat (and out of reset) it sends the next frame's top
    border and the first row's left border at once.

    Parameters
    ----------
    layer : :class:`hwgen.compiler.dataflow.Pad`
        ``lanes`` must divide ``c``; ``value`` must fit ``bits`` (``signed``).

    Members
    -------
    i : In(stream.Signature(unsigned(lanes * bits)))
        ``h * w * c / lanes`` beats per frame. ``ready`` is high at interior pixels while the
        output buffer has room (registered state only, no path from ``o.ready``).
    o : Out(stream.Signature(unsigned(lanes * bits)))
        ``out_h * out_w * c / lanes`` beats per frame; ``valid`` is registered.

    Throughput: one output beat per cycle, ``layer.cycles = out_h * out_w * c / lanes``
    cycles per frame with the input keeping up. Latency (:attr:`latency`): ``1 - P`` cycles,
    ``P = (top * out_w + left) * c / lanes`` the border beats before the first interior
    beat (zero or negative when the map is padded at the top or left: the first output beat
    is a border beat sent before any input is taken; see :func:`first_frame_times`).
    Back-pressure: the walk stalls while the output buffer is full, and at an interior pixel
    while no input beat is valid.
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
        """``1 - (top * out_w + left) * c / lanes``."""
        return 1 - lead(self.layer)

    memory_shapes = property(lambda self: [])

    def elaborate(self, platform):
        m = Module()
        layer, groups = self.layer, self.groups
        top, left, bottom, right = layer.pads
        m.submodules.obuf = obuf = OutputBuffer(layer.lanes * layer.bits)
        wiring.connect(m, obuf.o, wiring.flipped(self.o))

        g = Signal(range(groups))
        x = Signal(range(layer.out_w))
        y = Signal(range(layer.out_h))
        inside = [Const(1)]
        if top:
            inside.append(y >= top)
        if bottom:
            inside.append(y < top + layer.h)
        if left:
            inside.append(x >= left)
        if right:
            inside.append(x < left + layer.w)
        interior = Signal()
        m.d.comb += interior.eq(functools.reduce(operator.and_, inside))
        fill = pack([layer.value] * layer.lanes, layer.bits)

        m.d.comb += [
            self.i.ready.eq(obuf.i.ready & interior),
            obuf.i.valid.eq(~interior | self.i.valid),
            obuf.i.payload.eq(Mux(interior, self.i.payload, fill)),
        ]
        last_g = g == groups - 1
        last_x = x == layer.out_w - 1
        last_y = y == layer.out_h - 1
        with m.If(obuf.i.valid & obuf.i.ready):
            m.d.sync += g.eq(Mux(last_g, 0, g + 1))
            with m.If(last_g):
                m.d.sync += x.eq(Mux(last_x, 0, x + 1))
                with m.If(last_x):
                    m.d.sync += y.eq(Mux(last_y, 0, y + 1))
        return m
