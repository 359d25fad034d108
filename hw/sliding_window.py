"""Sliding-window generator: a line buffer turning a pixel stream into a window stream."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hwgen.compiler import dataflow, memory

from .stream import OutputBuffer, beat_signature, check_layer, rejecting

__all__ = ["SlidingWindow", "first_frame_taken", "first_frame_times", "memory_shapes"]


def _validate(layer):
    check_layer(layer, dataflow.SlidingWindow, ("h", "w", "c", "bits", "lanes"))
    for what in ("kernel", "stride"):
        value = getattr(layer, what)
        if (not isinstance(value, tuple) or len(value) != 2
                or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in value)):
            raise ValueError(f"{layer.name}: {what}={value!r} must be two positive integers "
                             f"(rows, columns)")
    if layer.kernel[0] > layer.h or layer.kernel[1] > layer.w:
        raise ValueError(f"{layer.name}: a {layer.kernel[0]}x{layer.kernel[1]} window does "
                         f"not fit a {layer.h}x{layer.w} map")
    layer.check_folding()
    (spec,) = memory.plan(layer)
    if spec.style == "spram":
        raise ValueError(f"{layer.name}: the line buffer is written and read in the same "
                         f"cycle, which single-port SPRAM cannot do; put it in 'block', "
                         f"'logic' or 'distributed'")
    return spec


def memory_shapes(layer) -> list[tuple[str, int, int]]:
    """``[("line_buffer", lanes * bits, buffer_rows * w * c / lanes)]``, from the memory
    plan."""
    _validate(layer)
    return [(spec.purpose, spec.width, spec.depth) for spec in memory.plan(layer)]


def _stored(layer, y: int) -> bool:
    """Whether the writer stores row ``y``: some window reads it."""
    kh, sh = layer.kernel[0], layer.stride[0]
    return y < layer.used_rows and y % sh < kh


def _first_frame(layer, arrivals):
    """``(taken, out)``: the transfer cycles of the first frame's input and output beats
    (see :func:`first_frame_times`)."""
    _validate(layer)
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    w, groups = layer.w, layer.c // layer.lanes
    row, depth = w * groups, memory.line_buffer_depth(layer)
    arrivals = [int(t) for t in arrivals]
    beats_in = layer.h * w * groups
    if len(arrivals) != beats_in:
        raise ValueError(f"{layer.name}: {len(arrivals)} arrival times for a frame of "
                         f"{beats_in} input beats")
    # Windows in output order: (last pixel's last beat, releases rows after window rows).
    per_row = kw * groups
    windows = []
    for oy in range(layer.out_h):
        for ox in range(layer.out_w):
            need = ((oy * sh + kh - 1) * w + ox * sw + kw) * groups - 1
            frees = (kh if oy == layer.out_h - 1 else min(sh, kh)) \
                if ox == layer.out_w - 1 else 0
            windows.append((need, frees))
    taken, out = [], []
    releases = []  # cycle of each row released, in order
    issue = -1  # the reader's last read

    def read_windows():
        """Issue the windows whose last pixel has been taken."""
        nonlocal issue
        while len(out) < len(windows) * kh * per_row:
            need, frees = windows[len(out) // (kh * per_row)]
            if need >= len(taken):
                return
            start = max(taken[need] + 1, issue + 1)
            out.extend(start + 2 + k for k in range(kh * per_row))
            releases.extend(start + (ky + 1) * per_row - 1 for ky in range(frees))
            issue = start + kh * per_row - 1

    stored = 0
    for k, t in enumerate(arrivals):
        if taken:
            t = max(t, taken[-1] + 1)
        if _stored(layer, k // groups // w):
            # A free word: at most depth - 1 words stored and not released before this one.
            short = stored - (depth - 1)
            if short > 0:
                read_windows()
                rows = -(-short // row)
                if rows > len(releases):
                    raise AssertionError("the line buffer would never free a word")
                t = max(t, releases[rows - 1] + 1)
            stored += 1
        taken.append(t)
    read_windows()
    return taken, out


def first_frame_times(layer, arrivals) -> list[int]:
    """The transfer cycle of each output beat of the first frame into an idle
    :class:`SlidingWindow`, its output always ready.

    Parameters
    ----------
    layer : :class:`hwgen.compiler.dataflow.SlidingWindow`
    arrivals : list of int
        The cycle from which each of the frame's ``h * w * c / lanes`` input beats is offered
        (non-decreasing). A beat is taken at the earliest cycle at or after its arrival, after
        the previous beat's transfer, and, if it is stored, once the line buffer has a free
        word (it fills when the output side is the slower one; a released row frees its words
        the cycle after the read that releases it); :func:`first_frame_taken` gives those
        cycles. Measured transfer cycles therefore come back unchanged.

    Returns
    -------
    list of int
        ``out_h * out_w * kh * kw * c / lanes`` cycles, in the numbering of ``arrivals``. A
        window's first read issues the cycle after the transfer of its last pixel's last
        beat, or the cycle after the previous window's last read if that is later; its
        ``kh * kw * c / lanes`` reads issue on consecutive cycles and each beat leaves two
        cycles after its read (memory read, output buffer).
    """
    return _first_frame(layer, arrivals)[1]


def first_frame_taken(layer, arrivals) -> list[int]:
    """The transfer cycle of each input beat of the first frame into an idle
    :class:`SlidingWindow` offered from ``arrivals`` on (see :func:`first_frame_times`),
    its output always ready: later than the arrival when the line buffer is full."""
    return _first_frame(layer, arrivals)[0]


class SlidingWindow(wiring.Component):
    """The window of ``kernel = (kh, kw)`` pixels at ``(oy * sh, ox * sw)`` for every output
    pixel ``(oy, ox)`` of each ``h x w x c`` map (channels-last, ``lanes`` channels per beat,
    ``g = c / lanes`` beats per pixel), as ``kh * kw * g`` beats in ``(ky, kx, channel group)``
    order.

    The line buffer is a circular buffer of ``D = buffer_rows * w * g`` words of ``lanes *
    bits`` (one :class:`~amaranth.lib.memory.Memory`, a write port and a synchronous read
    port; its ``ram_style`` as the memory plan says).

    The writer takes every input beat. It stores the beats of the rows some window reads, one
    word each at consecutive addresses (modulo ``D``), and drops the others: rows from
    ``used_rows`` on, and when ``sh > kh`` the ``sh - kh`` rows between two windows' rows (so
    an output row's windows start ``min(sh, kh)`` stored rows after the previous one's). It
    stores a beat only while fewer than ``D`` words are stored and not yet released, counts
    the pixels of its frame, and how many frames it is ahead of the reader (from -1, the
    reader done with a frame the writer is still dropping the end of, to the frames that fit
    the buffer beside a row of the reader's frame).

    The reader walks the windows in output order. A window waits until its last pixel
    ``(oy * sh + kh - 1, ox * sw + kw - 1)`` of the reader's frame is written (the writer in
    a later frame, or past that pixel); then its ``kh * kw * g`` reads issue one per cycle:
    window row ``ky`` is the ``kw * g`` consecutive words from ``row_base + ky * w * g + ox *
    sw * g`` (addresses kept incrementally, compare-and-subtract modulo ``D``). The last
    window of an output row releases its first ``min(sh, kh)`` rows (all ``kh`` in a frame's
    last output row), each as soon as it has read it, and the next output row starts where
    they ended: over a frame the reader releases every stored row. Columns right of the
    last window are never read, so a row can be released before the writer has taken its
    last pixels; the count of stored words then dips below zero, and the writer stores them
    into the released space. Each read goes to the output buffer a cycle later.

    Parameters
    ----------
    layer : :class:`hwgen.compiler.dataflow.SlidingWindow`
        ``lanes`` must divide ``c``; the line buffer may not be planned in ``"spram"``.

    Members
    -------
    i : In(stream.Signature(unsigned(lanes * bits)))
        ``h * w * g`` beats per frame, pixel ``(y, x)`` in raster order, element 0 in the
        LSBs. ``ready`` depends only on registered state: high while the beat is dropped or
        the line buffer has a free word.
    o : Out(stream.Signature(unsigned(lanes * bits)))
        ``out_h * out_w * kh * kw * g`` beats per frame (the elements are carried, never
        looked at). ``valid`` is registered (a two-entry
        :class:`~hwgen.hw.stream.OutputBuffer`).

    Throughput: ``layer.cycles = max(h * w, out_h * out_w * kh * kw) * g`` cycles per frame in
    steady state with the input back to back and the output always ready: the line buffer's
    ``buffer_rows`` lets the writer fill the next windows' rows, and the next frame's first
    ``kh`` rows, while the reader works. Latency (:attr:`latency`): ``((kh - 1) * w + kw) *
    g + 2`` cycles from a frame's first input transfer to its first output transfer, into an
    idle block (the first window waits for its last pixel; see :func:`first_frame_times` for
    input with gaps). Back-pressure: the reader advances on the output buffer's registered
    ``ready`` (it stalls while two beats wait), so no path runs from ``o.ready`` to
    ``i.ready``; the writer stalls while the line buffer is full, which happens when the
    output side is the slower one.
    """

    def __init__(self, layer):
        with rejecting(self):
            self._spec = _validate(layer)
        self.layer = layer
        width = layer.lanes * layer.bits
        super().__init__({"i": In(beat_signature(width)), "o": Out(beat_signature(width))})

    @property
    def latency(self) -> int:
        """``((kh - 1) * w + kw) * c / lanes + 2``."""
        layer = self.layer
        return ((layer.kernel[0] - 1) * layer.w + layer.kernel[1]) * (layer.c // layer.lanes) + 2

    @property
    def memory_shapes(self) -> list[tuple[str, int, int]]:
        return memory_shapes(self.layer)

    def elaborate(self, platform):
        m = Module()
        layer, spec = self.layer, self._spec
        h, w, groups = layer.h, layer.w, layer.c // layer.lanes
        (kh, kw), (sh, sw) = layer.kernel, layer.stride
        out_h, out_w, used = layer.out_h, layer.out_w, layer.used_rows
        row, depth = w * groups, spec.depth
        step = min(sh, kh)  # rows stored per output row, but for the last one's kh
        stored = (out_h - 1) * step + kh  # rows stored per frame
        assert depth >= kh * row, "the line buffer must hold a window's rows"
        # The writer can complete frames while the reader still holds a row of its frame.
        ahead_max = 1 + (depth - row) // (stored * row)
        # The reader may release the unwritten tail of a row (columns no window reads).
        tail = (w - (out_w - 1) * sw - kw) * groups

        m.submodules.line_buffer = mem = Memory(shape=spec.width, depth=depth, init=[],
                                                attrs=spec.attrs)
        wport = mem.write_port()
        rport = mem.read_port(domain="sync")
        m.submodules.obuf = obuf = OutputBuffer(spec.width)
        wiring.connect(m, obuf.o, wiring.flipped(self.o))
        adv = obuf.i.ready  # the read pipeline moves only when a beat could be taken

        def wrap(value, inc):
            """``(value + inc) mod depth`` for ``value < depth``, ``0 <= inc <= depth``."""
            total = value + inc
            return Mux(total >= depth, total - depth, total)

        # Shared state: words stored and not released, and frames the writer is ahead.
        occ = Signal(range(-tail, depth + 1))
        ahead = Signal(range(-1, ahead_max + 1))

        # Writer.
        wg = Signal(range(groups))
        wx = Signal(range(w))
        wy = Signal(range(h))
        phase = Signal(range(sh))  # wy mod sh
        wp = Signal(range(h * w))  # pixels of the writer's frame fully taken
        wa = Signal(range(depth))
        keep = Signal()
        m.d.comb += keep.eq((wy < used) & (phase < kh) if sh > kh else wy < used)
        take = self.i.valid & self.i.ready
        store = take & keep
        m.d.comb += [
            self.i.ready.eq(~keep | (occ < depth)),
            wport.addr.eq(wa), wport.data.eq(self.i.payload), wport.en.eq(store),
        ]
        end_frame_w = (wg == groups - 1) & (wp == h * w - 1)
        with m.If(store):
            m.d.sync += wa.eq(wrap(wa, 1))
        with m.If(take):
            m.d.sync += wg.eq(Mux(wg == groups - 1, 0, wg + 1))
            with m.If(wg == groups - 1):
                m.d.sync += [wp.eq(Mux(wp == h * w - 1, 0, wp + 1)),
                             wx.eq(Mux(wx == w - 1, 0, wx + 1))]
                with m.If(wx == w - 1):
                    m.d.sync += [wy.eq(Mux(wy == h - 1, 0, wy + 1)),
                                 phase.eq(Mux((phase == sh - 1) | (wy == h - 1), 0,
                                              phase + 1))]

        # Reader: beat j of window row ky of window (oy, ox).
        j = Signal(range(kw * groups))
        ky = Signal(range(kh))
        ox = Signal(range(out_w))
        oy = Signal(range(out_h))
        first_need = (kh - 1) * w + kw - 1
        need = Signal(range(h * w), init=first_need)  # the window's last pixel
        row_need = Signal(range(h * w), init=first_need)
        ra = Signal(range(depth))  # read address
        win_base = Signal(range(depth))  # window row 0's first word
        row_base = Signal(range(depth))  # the output row's first word
        written = (ahead > 0) | ((ahead == 0) & (wp > need))
        issue = adv & written
        m.d.comb += [rport.addr.eq(ra), rport.en.eq(adv)]
        v1 = Signal()
        with m.If(adv):
            m.d.sync += v1.eq(issue)
        m.d.comb += [obuf.i.valid.eq(v1), obuf.i.payload.eq(rport.data)]

        end_wrow = j == kw * groups - 1
        end_window = end_wrow & (ky == kh - 1)
        end_orow = end_window & (ox == out_w - 1)
        last_orow = oy == out_h - 1
        end_frame_r = end_orow & last_orow
        # The last window of an output row releases each of its first min(sh, kh) rows (kh
        # in a frame's last output row) as soon as it has read it.
        release = issue & end_wrow & (ox == out_w - 1) & (last_orow | (ky < step))
        next_row = Signal(range(depth))
        next_win = Signal(range(depth))
        m.d.comb += [next_row.eq(wrap(row_base, Mux(last_orow, kh * row, step * row))),
                     next_win.eq(wrap(win_base, sw * groups))]
        with m.If(issue):
            m.d.sync += j.eq(Mux(end_wrow, 0, j + 1))
            with m.If(~end_wrow):
                m.d.sync += ra.eq(wrap(ra, 1))
            with m.Elif(~end_window):
                m.d.sync += [ky.eq(ky + 1), ra.eq(wrap(ra, row - kw * groups + 1))]
            with m.Elif(~end_orow):
                m.d.sync += [ky.eq(0), ox.eq(ox + 1), need.eq(need + sw),
                             win_base.eq(next_win), ra.eq(next_win)]
            with m.Else():
                m.d.sync += [ky.eq(0), ox.eq(0), oy.eq(Mux(last_orow, 0, oy + 1)),
                             row_base.eq(next_row), win_base.eq(next_row), ra.eq(next_row)]
                with m.If(last_orow):
                    m.d.sync += [need.eq(first_need), row_need.eq(first_need)]
                with m.Else():
                    m.d.sync += [need.eq(row_need + sh * w), row_need.eq(row_need + sh * w)]

        m.d.sync += [
            occ.eq(occ + store - Mux(release, row, 0)),
            ahead.eq(ahead + (take & end_frame_w) - (issue & end_frame_r)),
        ]
        return m
