"""Matrix-vector-activation unit (MVAU): ``pe`` output lanes times ``simd`` input lanes.

Datapath, one *slot* per cycle::

    issue ─► weight/input read ─► products (reg) ─► adder tree (reg every 2 levels)
          ─► accumulate ─► hand-off ─► activation (binary search or bias) ─► OutputBuffer

A frame is ``nf`` neuron folds of ``S = max(sf, steps)`` slots; slots ``s < sf`` multiply
synapse fold ``s``, the others are idle so that the ``steps``-cycle activation of a fold
(running while the next fold accumulates) always finishes in time. Every product and adder is
sized to the range it can reach (from the actual weights and the input range), at most
``acc_bits`` wide: the adder tree and accumulator wrap modulo ``2**acc_bits``, which is exact
because the final sum fits ``acc_bits`` (the golden model checks that).

Narrow signed weights (all in ``[-(2**(b-1) - 1), 2**(b-1) - 1]``, e.g. ``[-7, 7]`` for 4 bits)
are stored as sign (the top bit of a weight's ``weight_bits``) and magnitude, so a product is
an unsigned ``|w| * x`` conditionally inverted: ``~p = -p - 1``. The ``+1`` of each negative
product enters an adder's carry-in (one per adder of the tree, the last one the
accumulator's), so it costs no extra adder. Weights that use ``-2**(b-1)`` are kept in two's
complement and multiplied as signed.

Binary layers (see :class:`hwgen.compiler.dataflow.MVAU`): with binary inputs and binary
weights (``layer.xnor``) a product is the bit ``XNOR(x, w)`` (registered like any product:
one logic cell per lane) and the adder tree is a popcount sized to its ranges; the
accumulator holds the popcount ``P``, the thresholds are stored as popcounts and a bias becomes
``2P + (bias - mw)``. A binary operand facing an integer one is ``+1`` or ``-1``: binary
weights select ``x`` or ``-x``, binary inputs are two-bit signed values.
"""

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hwgen.compiler import dataflow, memory
from hwgen.compiler.dataflow import bits_for_range

from .spram import SPRAM
from .stream import OutputBuffer, beat_signature, check_layer, lane, rejecting

__all__ = ["MVAU", "gather_schedule", "memory_shapes", "threshold_heap"]


def threshold_heap(row, out_bits: int) -> list[int]:
    """A non-decreasing row of ``2**out_bits - 1`` thresholds in heap order (index 0 unused,
    node 1 the median, children ``2k`` and ``2k+1``), as the binary search reads it."""
    heap = [0] * (2**out_bits)
    for node in range(1, 2**out_bits):
        depth = node.bit_length() - 1
        prefix = node - 2**depth
        heap[node] = int(row[(2 * prefix + 1) * 2 ** (out_bits - depth - 1) - 1])
    return heap


def _validate(layer):
    check_layer(layer, dataflow.MVAU,
                ("in_bits", "weight_bits", "acc_bits", "out_bits", "pe", "simd"))
    layer.check_folding()
    if layer.thresholds is not None and layer.out_bits > 12:
        raise ValueError(f"{layer.name}: out_bits={layer.out_bits} is too wide for a "
                         f"threshold search (2**out_bits thresholds per neuron)")
    if layer.bias is not None and layer.bias.shape != (layer.mh,):
        raise ValueError(f"{layer.name}: bias has shape {layer.bias.shape}, "
                         f"expected ({layer.mh},)")


def _corners(a_lo, a_hi, b_lo, b_hi) -> tuple[int, int]:
    """The range of ``a * b`` for ``a`` in ``[a_lo, a_hi]``, ``b`` in ``[b_lo, b_hi]``."""
    corners = [a * b for a in (a_lo, a_hi) for b in (b_lo, b_hi)]
    return min(corners), max(corners)


def _weight_coding(layer) -> tuple[bool, int]:
    """``(sign_magnitude, magnitude_bits)``: how weights are stored and multiplied. Sign and
    magnitude when some weight is negative and none is ``-2**(weight_bits-1)``; otherwise two's
    complement (``magnitude_bits`` is then unused)."""
    lo, hi = int(min(layer.weights.min(), 0)), int(max(layer.weights.max(), 0))
    sign_magnitude = layer.weight_signed and lo < 0 and -lo < 2 ** (layer.weight_bits - 1)
    return sign_magnitude, max(-lo, hi).bit_length() or 1


def _weight_code(w: int, wb: int, sign_magnitude: bool, bipolar: bool = False) -> int:
    if bipolar:
        return int(w > 0)
    if sign_magnitude:
        return (int(w < 0) << (wb - 1)) | abs(w)
    return w & ((1 << wb) - 1)


def gather_schedule(layer):
    """A gather layer's slots: ``[(n, [[(weight, column) per lane k] per PE j]) per slot]``.
    Slot ``s`` of fold ``n`` gives lane ``(j, k)`` the nonzero weight number ``s*simd + k``
    of neuron ``n*pe + j`` in column order, and ``(0, 0)`` past its last one."""
    slots = []
    for n, count in enumerate(layer.fold_slots):
        rows = []
        for j in range(layer.pe):
            r = n * layer.pe + j
            columns = np.flatnonzero(layer.weights[r]) if r < layer.mh else []
            pairs = [(int(layer.weights[r, c]), int(c)) for c in columns]
            rows.append(pairs + [(0, 0)] * (count * layer.simd - len(pairs)))
        for s in range(count):
            slots.append((n, [row[s * layer.simd:(s + 1) * layer.simd] for row in rows]))
    return slots


def _memory_plan(layer):
    nf, sf = layer.nf, layer.sf
    sign_magnitude, _ = _weight_coding(layer)
    bipolar = layer.weight_bipolar
    pe, simd, wb = layer.pe, layer.simd, layer.weight_bits
    words = []
    if layer.gather:
        cb = memory.gather_column_bits(layer)
        eb = memory.gather_element_bits(layer)
        columns = []
        for _, lanes in gather_schedule(layer):
            word = column = 0
            for i, (w, c) in enumerate(pair for row in lanes for pair in row):
                word |= _weight_code(w, wb, sign_magnitude) << (i * wb)
                column |= ((c // simd) << eb | c % simd) << (i * cb)
            words.append(word)
            columns.append(column)
        plan = [("weights", pe * simd * wb, len(words), words),
                ("columns", pe * simd * cb, len(words), columns)]
        plan += [(f"frame[{i}]", simd * layer.in_bits, memory.gather_frame_depth(layer), None)
                 for i in range(pe * simd)]
    else:
        for n in range(nf):
            for s in range(sf):
                word = 0
                for j in range(pe):
                    for k in range(simd):
                        r, c = n * pe + j, s * simd + k
                        if r < layer.mh and c < layer.mw:
                            w = _weight_code(int(layer.weights[r, c]), wb, sign_magnitude,
                                             bipolar)
                            word |= w << ((j * simd + k) * wb)
                words.append(word)
        plan = [("weights", pe * simd * wb, nf * sf, words)]
    if nf > 1 and not layer.gather:
        plan.append(("input_buffer", simd * layer.in_bits, sf, None))
    if layer.thresholds is not None:
        tb, ob = layer.threshold_bits, layer.out_bits
        stored = layer.stored_thresholds
        for j in range(pe):
            init = []
            for n in range(nf):
                r = n * pe + j
                heap = threshold_heap(stored[r], ob) if r < layer.mh else \
                    [0] * 2**ob
                init += [t & ((1 << tb) - 1) for t in heap]
            plan.append((f"thresholds[{j}]", tb, nf * 2**ob, init))
    # Shapes and placement come from the compiler's memory plan, the one the build checks
    # the synthesized block-RAM count against.
    specs = {spec.purpose: spec for spec in memory.plan(layer)}
    for purpose, width, depth, _ in plan:
        spec = specs.get(purpose)
        if spec is None or (spec.width, spec.depth) != (width, depth):
            raise AssertionError(f"{layer.name}: memory {purpose} {width}x{depth} differs from "
                                 f"the compiler's plan {spec}")
    return [(*entry, specs[entry[0]].attrs) for entry in plan]


class MVAU(wiring.Component):
    """Matrix-vector-activation unit computing :func:`hwgen.sim.golden.mvau` bit-exactly.

    Parameters
    ----------
    layer : :class:`hwgen.compiler.dataflow.MVAU`
        The layer description (weights, widths, thresholds or bias, ``pe``, ``simd``).

    Members
    -------
    i : In(stream.Signature(unsigned(simd * in_bits)))
        ``sf = ceil(mw / simd)`` beats per frame, element 0 in the LSBs; padding lanes of the
        last beat are ignored. Input is taken during neuron fold 0 only (and buffered for the
        other folds), so ``ready`` is low during folds ``1..nf-1``; a producer slower than
        one beat per cycle then stretches fold 0, so a stitched design needs a FIFO in front
        (about one input frame deep) to keep ``layer.cycles``. With gather lanes
        (``layer.gather``) a frame fills one bank of the frame copies and ``ready`` is low
        only while both banks hold a frame not yet read.
    o : Out(stream.Signature(unsigned(pe * out_bits)))
        ``nf = ceil(mh / pe)`` beats per frame; padding lanes of the last beat are 0.

    A convolution's MVAU (``layer.pixels > 1``) is the same hardware: each window is a frame
    to it (below, "frame" means one input vector), and ``layer.cycles`` counts all
    ``pixels`` of them.

    Throughput: exactly ``layer.cycles`` cycles per frame with input always valid and output
    always ready (``nf * max(sf, steps)``; with gather lanes ``max(sum(fold_lengths), sf)``).
    Latency (:attr:`latency`): ``sf + tree_stages + steps + 2`` cycles from the transfer of a
    frame's first input beat to that of its first output beat, with ``tree_stages =
    ceil(log2(simd)) // 2`` (more with gather lanes). Back-pressure: the whole pipeline
    advances on the output buffer's registered ``ready`` (it stalls while two results wait),
    so ``i.ready`` never depends combinationally on ``o.ready``; an input gap inserts a
    bubble.

    Memories (see :attr:`memory_shapes`): weights ``pe*simd*weight_bits`` x ``nf*sf`` (word
    ``n*sf + s``; narrow signed weights as sign and magnitude, see the module docstring); an
    input buffer ``simd*in_bits`` x ``sf`` when ``nf > 1`` (a block RAM, flip-flops, or
    :class:`~hwgen.hw.spram.SPRAM` as the plan says); with thresholds,
    one memory per PE lane of ``threshold_bits`` x ``nf * 2**out_bits`` (heap order, address
    ``n * 2**out_bits + node``); lanes search different nodes, so they cannot share one port.
    Gather lanes replace the input buffer with ``columns`` (a column per lane and slot) and a
    two-bank frame copy per lane, ``frame[i]`` of ``simd*in_bits`` x ``2 * 2**ceil(log2(sf))``
    (the bank is the address's top bit), and the weights
    hold one word per multiplying slot (:func:`gather_schedule`).
    """

    def __init__(self, layer):
        with rejecting(self):
            _validate(layer)
        self.layer = layer
        self.nf, self.sf, self.steps = layer.nf, layer.sf, layer.steps
        self.slots = max(self.sf, self.steps)
        self.tree_levels = (layer.simd - 1).bit_length()  # ceil(log2(simd))
        self.tree_stages = self.tree_levels // 2
        self._plan = _memory_plan(layer)
        super().__init__({
            "i": In(beat_signature(layer.simd * layer.in_bits)),
            "o": Out(beat_signature(layer.pe * layer.out_bits)),
        })

    @property
    def latency(self) -> int:
        """Cycles from a frame's first input transfer to its first output transfer (never
        stalled): ``sf + ceil(log2(simd)) // 2 + steps + 2``; with gather lanes the whole
        frame arrives first, fold 0 ends with its multiplying slots, and the products come two
        cycles later (columns, then frame words, then elements):
        ``sf + fold_lengths[0] + ceil(log2(simd)) // 2 + steps + 4``."""
        if self.layer.gather:
            return (self.sf + self.layer.fold_lengths[0] + self.tree_stages + self.steps
                    + 4)
        return self.sf + self.tree_stages + self.steps + 2

    def _gather_issue(self, m, mems, adv):
        """Gather lanes: the input side fills one bank of every lane's frame copy while the
        issue side walks the slots of the other, full one. A slot's columns are read in the
        issue cycle, the lanes' frame copies in the next, and each lane's element and the
        weights arrive in the one after, so the products come two cycles later than in a
        dense layer. Returns the weight read port, each lane's input element, and the flags,
        all of that last stage."""
        layer = self.layer
        pe, simd, nf, sf = layer.pe, layer.simd, self.nf, self.sf
        counts, slots = layer.fold_slots, layer.fold_lengths
        words = sum(counts)
        eb = memory.gather_element_bits(layer)
        cb = memory.gather_column_bits(layer)
        frames = [mems[f"frame[{i}]"] for i in range(pe * simd)]

        # Input side: sf beats fill bank wbank of every frame copy; a full bank waits until
        # the issue side has read it.
        wbank, wbeat = Signal(), Signal(range(sf))
        full = [Signal(name="full0"), Signal(name="full1")]
        rbank, done_bank, release = Signal(), Signal(), Signal()
        writing = self.i.valid & self.i.ready
        m.d.comb += self.i.ready.eq(~Mux(wbank, full[1], full[0]))
        for frame in frames:
            port = frame.write_port()
            m.d.comb += [port.addr.eq(Cat(wbeat, wbank)),
                         port.data.eq(self.i.payload), port.en.eq(writing)]
        with m.If(writing):
            m.d.sync += wbeat.eq(Mux(wbeat == sf - 1, 0, wbeat + 1))
            with m.If(wbeat == sf - 1):
                m.d.sync += wbank.eq(~wbank)
        for b in (0, 1):
            # A bank is released when the reads of its last slot happen (the first advance
            # after that slot issued); the input side sees it free a cycle later.
            with m.If(release & adv & (done_bank == b)):
                m.d.sync += full[b].eq(0)
            with m.If(writing & (wbeat == sf - 1) & (wbank == b)):
                m.d.sync += full[b].eq(1)

        # Issue side: slot s of neuron fold n; count_n slots multiply, slots_n in all.
        s = Signal(range(max(slots)))
        n = Signal(range(nf))
        count_n = Signal(range(max(counts) + 1))
        slots_n = Signal(range(max(slots) + 1))
        with m.Switch(n):
            for fold in range(nf):
                with m.Case(fold):
                    m.d.comb += [count_n.eq(counts[fold]), slots_n.eq(slots[fold])]
        waddr = Signal(range(words))
        # The multiplying slots end the fold, so that consecutive folds hand over to the
        # activation at least slots_n >= steps cycles apart, as in a dense layer.
        mac = s >= slots_n - count_n
        begin = (n == 0) & (s == 0)
        fire = adv & (~begin | Mux(rbank, full[1], full[0]))
        end_fold = s == slots_n - 1
        end_frame = end_fold & (n == nf - 1)
        with m.If(fire):
            m.d.sync += s.eq(Mux(end_fold, 0, s + 1))
            with m.If(end_fold):
                m.d.sync += n.eq(Mux(n == nf - 1, 0, n + 1))
            with m.If(mac):
                m.d.sync += waddr.eq(Mux(waddr == words - 1, 0, waddr + 1))
            with m.If(end_frame):
                m.d.sync += [done_bank.eq(rbank), rbank.eq(~rbank)]
        with m.If(adv):
            m.d.sync += release.eq(fire & end_frame)

        # Stage 0: the slot's columns arrive.
        cport = mems["columns"].read_port()
        m.d.comb += [cport.addr.eq(waddr), cport.en.eq(adv)]
        v0, first0, last0, fold0 = Signal(), Signal(), Signal(), Signal(range(nf))
        bank0, waddr0 = Signal(), Signal(range(words))
        with m.If(adv):
            m.d.sync += [v0.eq(fire & mac), first0.eq(s == slots_n - count_n), last0.eq(end_fold),
                         fold0.eq(n), bank0.eq(rbank), waddr0.eq(waddr)]

        # Stage 1: every lane's input word arrives.
        elements = []
        for i, frame in enumerate(frames):
            column = cport.data[i * cb:(i + 1) * cb]
            port = frame.read_port()
            word = column[eb:eb + (sf - 1).bit_length()]
            m.d.comb += [port.addr.eq(Cat(word, bank0)), port.en.eq(adv)]
            element = Signal(eb, name=f"element{i}")
            with m.If(adv):
                m.d.sync += element.eq(column[:eb])
            elements.append((port, element))
        v1, first1, last1, fold1 = Signal(), Signal(), Signal(), Signal(range(nf))
        waddr1 = Signal(range(words))
        with m.If(adv):
            m.d.sync += [v1.eq(v0), first1.eq(first0), last1.eq(last0), fold1.eq(fold0),
                         waddr1.eq(waddr0)]

        # Stage 2: the weights and each lane's element, picked out of its word and registered
        # (a multiplexer in front of the multiplier maps to about twice its LUTs).
        wport = mems["weights"].read_port()
        m.d.comb += [wport.addr.eq(waddr1), wport.en.eq(adv)]
        xs = []
        for i, (port, element) in enumerate(elements):
            x = Signal(layer.in_bits, name=f"x{i}")
            with m.If(adv):
                m.d.sync += x.eq(port.data.word_select(element, layer.in_bits))
            xs.append(x)
        v2, first2, last2, fold2 = Signal(), Signal(), Signal(), Signal(range(nf))
        with m.If(adv):
            m.d.sync += [v2.eq(v1), first2.eq(first1), last2.eq(last1), fold2.eq(fold1)]

        def x_of(j, k):
            x = xs[j * simd + k]
            return x.as_signed() if layer.in_signed else x

        return wport, x_of, [v2, first2, last2, fold2]

    @property
    def memory_shapes(self) -> list[tuple[str, int, int]]:
        """``[(purpose, width, depth)]`` of every :class:`~amaranth.lib.memory.Memory`."""
        return [(purpose, width, depth) for purpose, width, depth, *_ in self._plan]

    def elaborate(self, platform):
        m = Module()
        layer = self.layer
        pe, simd, nf, sf, S = layer.pe, layer.simd, self.nf, self.sf, self.slots
        ab, ob = layer.acc_bits, layer.out_bits

        mems = {}
        for purpose, width, depth, init, attrs in self._plan:
            if attrs["ram_style"] == "spram":
                mems[purpose] = SPRAM(width, depth)
            else:
                mems[purpose] = Memory(shape=unsigned(width), depth=depth, init=init or [],
                                       attrs=attrs)
            m.submodules[purpose.replace("[", "_").replace("]", "")] = mems[purpose]

        m.submodules.obuf = obuf = OutputBuffer(pe * ob)
        wiring.connect(m, obuf.o, wiring.flipped(self.o))
        adv = obuf.i.ready  # the pipeline moves only when a result could be taken

        if layer.gather:
            wport, x_of, flags = self._gather_issue(m, mems, adv)
        else:
            # Issue: slot s of neuron fold n.
            s = Signal(range(S))
            n = Signal(range(nf))
            waddr = Signal(range(nf * sf))
            mac = s < sf
            need_in = (n == 0) & mac
            fire = adv & (~need_in | self.i.valid)
            m.d.comb += self.i.ready.eq(adv & need_in)
            with m.If(fire):
                m.d.sync += s.eq(Mux(s == S - 1, 0, s + 1))
                with m.If(s == S - 1):
                    m.d.sync += n.eq(Mux(n == nf - 1, 0, n + 1))
                with m.If(mac):
                    m.d.sync += waddr.eq(Mux(waddr == nf * sf - 1, 0, waddr + 1))

            wport = mems["weights"].read_port()
            m.d.comb += [wport.addr.eq(waddr), wport.en.eq(adv)]

            # Stage 1: weights and inputs arrive; products are registered.
            v1, first1, last1, fold1 = Signal(), Signal(), Signal(), Signal(range(nf))
            xs1, stream1 = Signal(simd * layer.in_bits), Signal()
            with m.If(adv):
                m.d.sync += [v1.eq(fire & mac), first1.eq(s == 0), last1.eq(s == sf - 1),
                             fold1.eq(n), xs1.eq(self.i.payload), stream1.eq(n == 0)]
            x = xs1
            if nf > 1 and isinstance(mems["input_buffer"], SPRAM):
                # Single port: fold 0 writes (and reads nothing it needs), later folds read.
                buf = mems["input_buffer"]
                m.d.comb += [buf.addr.eq(s), buf.wdata.eq(self.i.payload),
                             buf.we.eq(fire & need_in), buf.re.eq(adv)]
                x = Mux(stream1, xs1, buf.rdata)
            elif nf > 1:
                bw = mems["input_buffer"].write_port()
                br = mems["input_buffer"].read_port()
                m.d.comb += [bw.addr.eq(s), bw.data.eq(self.i.payload), bw.en.eq(fire & need_in),
                             br.addr.eq(s), br.en.eq(adv)]
                x = Mux(stream1, xs1, br.data)

            flags = [v1, first1, last1, fold1]

            def x_of(j, k):
                return lane(x, k, layer.in_bits, layer.in_signed)

        def stage(values):
            """Register ``values`` and the slot flags on ``adv``."""
            nonlocal flags
            regs = [Signal(v.shape()) for v in values]
            new_flags = [Signal(f.shape()) for f in flags]
            with m.If(adv):
                m.d.sync += [r.eq(v) for r, v in zip(regs, values, strict=True)]
                m.d.sync += [r.eq(f) for r, f in zip(new_flags, flags, strict=True)]
            flags = new_flags
            return regs

        def fit(value, lo, hi):
            """``value`` holding an integer in ``[lo, hi]`` (or that integer modulo
            ``2**ab``), cut to the narrowest shape for the range, at most ``ab`` bits (modular
            arithmetic in ``acc_bits`` is exact for the final sum)."""
            bits, is_signed = bits_for_range(lo, hi)
            if bits >= ab:
                return value[:ab].as_signed(), -(2 ** (ab - 1)), 2 ** (ab - 1) - 1
            value = value[:bits]
            return (value.as_signed() if is_signed else value), lo, hi

        def add(a, b, carry=None):
            """``a + b (+ carry)`` on ``(value, lo, hi)`` triples. A carry bit enters at the
            bottom of the carry chain: ``(2a + c) + (2b + 1) = 2(a + b + c) + (1 - c)``."""
            (av, alo, ahi), (bv, blo, bhi) = a, b
            if carry is None:
                return fit(av + bv, alo + blo, ahi + bhi)

            def shift(v, low):
                v2 = Cat(low, v)
                return v2.as_signed() if v.shape().signed else v2
            return fit((shift(av, carry) + shift(bv, Const(1, 1)))[1:], alo + blo,
                       ahi + bhi + 1)

        # Products (registered), with their ranges; with sign and magnitude weights, the sign
        # of each product is a carry to add in the tree.
        sign_magnitude, mb = _weight_coding(layer)
        x_lo, x_hi = dataflow.int_range(layer.in_bits, layer.in_signed)
        if layer.in_bipolar:
            x_lo, x_hi = -1, 1
        w_lo, w_hi = int(min(layer.weights.min(), 0)), int(max(layer.weights.max(), 0))
        # Binary weights cannot be zero, so the padding lanes of the last synapse fold
        # (when simd does not divide mw) are masked instead.
        live_k = layer.mw - (sf - 1) * simd
        last_s = flags[2]
        products, ranges, signs = [], [], []
        for j in range(pe):
            for k in range(simd):
                xk = x_of(j, k)
                if layer.in_bipolar and not layer.xnor:
                    xk = Cat(Const(1, 1), ~xk[0]).as_signed()  # bit b -> 2b - 1
                if layer.weight_bipolar:
                    wk = wport.data[j * simd + k]
                    if layer.xnor:
                        value = (~(xk ^ wk))[0], 0, 1
                    else:
                        value = fit(Mux(wk, xk, -xk), min(x_lo, -x_hi), max(x_hi, -x_lo))
                    if k >= live_k:
                        value = (Mux(last_s, 0, value[0]), *value[1:])
                elif sign_magnitude:
                    code = lane(wport.data, j * simd + k, layer.weight_bits, False)
                    p, lo, hi = fit(code[:mb] * xk, *_corners(0, 2**mb - 1, x_lo, x_hi))
                    if not p.shape().signed:
                        p = Cat(p, Const(0, 1)).as_signed()
                    neg = code[layer.weight_bits - 1]
                    q = (p ^ neg.replicate(len(p)))[:len(p)].as_signed()  # neg: -p - 1
                    value = fit(q, min(lo, -hi - 1), max(hi, -lo - 1))
                    signs.append(neg)
                else:
                    w = lane(wport.data, j * simd + k, layer.weight_bits, layer.weight_signed)
                    value = fit(w * xk, *_corners(w_lo, w_hi, x_lo, x_hi))
                products.append(value[0])
                ranges.append(value[1:])
        regs = stage(products + signs)
        values = [(v, *r) for v, r in zip(regs[:len(products)], ranges, strict=True)]
        signs = regs[len(products):]

        # Adder tree, all lanes level by level; a register after every second level. Each
        # adder takes one pending sign carry of its lane.
        lanes = [values[j * simd:(j + 1) * simd] for j in range(pe)]
        carries = [signs[j * simd:(j + 1) * simd] for j in range(pe)]
        for level in range(1, self.tree_levels + 1):
            lanes = [[add(v[i], v[i + 1], c.pop() if c else None) if i + 1 < len(v) else v[i]
                      for i in range(0, len(v), 2)] for v, c in zip(lanes, carries, strict=True)]
            if level % 2 == 0:
                width, pending = len(lanes[0]), len(carries[0])
                flat = stage([v for vals in lanes for v, *_ in vals] +
                             [c for cs in carries for c in cs])
                lanes = [[(r, *v[1:]) for r, v in zip(flat[j * width:(j + 1) * width], vals,
                                                     strict=True)]
                         for j, vals in enumerate(lanes)]
                flat = flat[pe * width:]
                carries = [flat[j * pending:(j + 1) * pending] for j in range(pe)]
        sums = [vals[0] for vals in lanes]
        vA, firstA, lastA, foldA = flags
        assert all(len(c) <= 1 for c in carries)  # simd - 1 adders, then the accumulator

        # Accumulate; the last slot of a fold hands the sums to the activation stage.
        acc = [Signal(signed(ab), name=f"acc{j}") for j in range(pe)]
        full = (-(2 ** (ab - 1)), 2 ** (ab - 1) - 1)
        acc_next = [add((Mux(firstA, 0, a), *full), v, c[0] if c else None)[0]
                    for a, v, c in zip(acc, sums, carries, strict=True)]
        start = adv & vA & lastA
        with m.If(adv & vA):
            m.d.sync += [a.eq(v) for a, v in zip(acc, acc_next, strict=True)]

        hand = [Signal(signed(ab), name=f"hand{j}") for j in range(pe)]
        act_fold = Signal(range(nf))
        busy = Signal()
        k = Signal(range(self.steps + 1))
        done = busy & (k == self.steps)
        with m.If(adv & done):
            m.d.sync += busy.eq(0)
        with m.If(adv & busy):
            m.d.sync += k.eq(k + 1)
        with m.If(start):
            m.d.sync += [busy.eq(1), k.eq(1), act_fold.eq(foldA)]
            m.d.sync += [h.eq(v) for h, v in zip(hand, acc_next, strict=True)]

        results = []
        if layer.thresholds is not None:
            # Binary search: node = 2*node + (acc >= T[node]), one step per cycle; the
            # next address comes straight from the comparison (T sits at fold*2**ob + node).
            for j in range(pe):
                port = mems[f"thresholds[{j}]"].read_port()
                node = Signal(ob, name=f"node{j}")
                cmp = hand[j] >= port.data.as_signed()
                node_next = Cat(cmp, node)
                m.d.comb += [
                    port.addr.eq(Mux(start, Cat(Const(1, ob), foldA),
                                     Cat(node_next[:ob], act_fold))),
                    port.en.eq(adv),
                ]
                with m.If(adv & busy):
                    m.d.sync += node.eq(node_next[:ob])
                with m.If(start):
                    m.d.sync += node.eq(1)
                results.append(node_next[:ob] + layer.out_base)
        else:
            for j in range(pe):
                bias = 0
                if layer.bias is not None:
                    values = [int(layer.bias[n * pe + j]) if n * pe + j < layer.mh else 0
                              for n in range(nf)]
                    bias = Signal(signed(max(bits_for_range(min(values), max(values))[0], 1)
                                         + 1), name=f"bias{j}")
                    with m.Switch(act_fold):
                        for n_, b in enumerate(values):
                            with m.Case(n_):
                                m.d.comb += bias.eq(b)
                if layer.xnor:  # acc + bias = 2P - mw + bias
                    results.append(Cat(Const(0, 1), hand[j]).as_signed() + bias - layer.mw)
                else:
                    results.append(hand[j] + bias)

        # Padding lanes of the last fold output 0.
        live = layer.mh - (nf - 1) * pe
        payload = []
        for j, value in enumerate(results):
            value = value[:ob]
            if j >= live:
                value = Mux(act_fold == nf - 1, 0, value)
            payload.append(value)
        m.d.comb += [obuf.i.valid.eq(done), obuf.i.payload.eq(Cat(*payload))]
        return m


def memory_shapes(layer) -> list[tuple[str, int, int]]:
    """``[(purpose, width, depth)]`` of the memories :class:`MVAU` instantiates for
    ``layer`` (the same numbers the component uses)."""
    _validate(layer)
    return [(purpose, width, depth) for purpose, width, depth, *_ in _memory_plan(layer)]
