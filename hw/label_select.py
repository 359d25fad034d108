"""Label select: argmax over a frame of integer logits, the lowest index winning ties."""

import math

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwgen.compiler import dataflow

from .stream import OutputBuffer, beat_signature, check_layer, lane, rejecting

__all__ = ["LabelSelect", "memory_shapes"]


def _validate(layer):
    check_layer(layer, dataflow.LabelSelect, ("n", "in_bits", "lanes"))
    if layer.lanes > layer.n:
        raise ValueError(f"{layer.name}: lanes={layer.lanes} exceeds n={layer.n}")


def memory_shapes(layer) -> list[tuple[str, int, int]]:
    """LabelSelect uses no memory."""
    _validate(layer)
    return []


class LabelSelect(wiring.Component):
    """Argmax of ``n`` logits arriving ``lanes`` per beat (lowest index wins ties).

    Parameters
    ----------
    layer : :class:`hwgen.compiler.dataflow.LabelSelect`

    Members
    -------
    i : In(stream.Signature(unsigned(lanes * in_bits)))
        ``ceil(n / lanes)`` beats per frame (two's complement when ``in_signed``); padding
        lanes of the last beat are ignored. ``ready`` is the output buffer's registered
        ``ready``.
    o : Out(stream.Signature(unsigned(out_bits)))
        One beat per frame: the index of the maximum.

    Throughput: one input beat per cycle, ``layer.cycles = ceil(n / lanes)`` cycles per
    frame. Latency (:attr:`latency`): ``ceil(n / lanes) + max(1, ceil(L / 2))`` cycles from
    the first input transfer to the output transfer, ``L = ceil(log2(lanes))`` comparator
    levels with a register after every second one. Back-pressure: the pipeline stalls while
    the two-entry output buffer is full.
    """

    def __init__(self, layer):
        with rejecting(self):
            _validate(layer)
        self.layer = layer
        self.beats = math.ceil(layer.n / layer.lanes)
        self.levels = (layer.lanes - 1).bit_length()  # ceil(log2(lanes))
        super().__init__({
            "i": In(beat_signature(layer.lanes * layer.in_bits)),
            "o": Out(beat_signature(layer.out_bits)),
        })

    @property
    def latency(self) -> int:
        """``ceil(n / lanes) + max(1, ceil(levels / 2))``."""
        return self.beats + max(1, math.ceil(self.levels / 2))

    memory_shapes = property(lambda self: [])

    def elaborate(self, platform):
        m = Module()
        layer, lanes = self.layer, self.layer.lanes
        m.submodules.obuf = obuf = OutputBuffer(layer.out_bits)
        wiring.connect(m, obuf.o, wiring.flipped(self.o))
        adv = obuf.i.ready

        beat = Signal(range(self.beats))
        base = Signal(range(layer.n))  # index of lane 0 of this beat
        fire = adv & self.i.valid
        m.d.comb += self.i.ready.eq(adv)
        with m.If(fire):
            with m.If(beat == self.beats - 1):
                m.d.sync += [beat.eq(0), base.eq(0)]
            with m.Else():
                m.d.sync += [beat.eq(beat + 1), base.eq(base + lanes)]

        # Candidates (ok, value, lane); padding lanes of the last beat are never ok.
        live = layer.n - (self.beats - 1) * lanes
        cands = []
        for j in range(lanes):
            ok = Const(1) if j < live else (beat != self.beats - 1)
            cands.append((ok, lane(self.i.payload, j, layer.in_bits, layer.in_signed), j))
        flags = [fire, beat == 0, beat == self.beats - 1, base]

        def stage(cands):
            nonlocal flags
            regs = []
            for ok, value, idx in cands:
                r = (Signal(), Signal(value.shape()), Signal(range(lanes)))
                with m.If(adv):
                    m.d.sync += [r[0].eq(ok), r[1].eq(value), r[2].eq(idx)]
                regs.append(r)
            new = [Signal(f.shape()) for f in flags]
            with m.If(adv):
                m.d.sync += [r.eq(f) for r, f in zip(new, flags, strict=True)]
            flags = new
            return regs

        for level in range(1, self.levels + 1):
            nxt = []
            for k in range(0, len(cands), 2):
                if k + 1 == len(cands):
                    nxt.append(cands[k])
                    continue
                (lok, lval, lidx), (rok, rval, ridx) = cands[k], cands[k + 1]
                right = rok & (~lok | (rval > lval))  # strict: the lower index wins ties
                nxt.append((lok | rok, Mux(right, rval, lval), Mux(right, ridx, lidx)))
            cands = nxt
            if level % 2 == 0:
                cands = stage(cands)
        if self.levels % 2 == 1 or self.levels == 0:
            cands = stage(cands)
        (_, value, idx), = cands
        v, first, last, b = flags

        best_val = Signal(value.shape())
        best_idx = Signal(layer.out_bits)
        take = first | (value > best_val)
        cand_idx = (b + idx)[:layer.out_bits]
        with m.If(adv & v & take):
            m.d.sync += [best_val.eq(value), best_idx.eq(cand_idx)]
        m.d.comb += [obuf.i.valid.eq(v & last),
                     obuf.i.payload.eq(Mux(take, cand_idx, best_idx))]
        return m
