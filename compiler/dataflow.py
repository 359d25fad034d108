"""The dataflow graph: the hardware layers as the compiler describes them.

Every layer type defined here appears in exactly three places under the same name: this
description (what it computes and how parallel it is), its NumPy semantics in
:mod:`hwgen.sim.golden` (what it must compute), and its Amaranth component in :mod:`hwgen.hw`
(how it is made of gates).

Streams between layers carry frames of ``n`` elements in ``pixels`` vectors of ``n //
pixels`` elements, each vector in ``ceil((n // pixels) / lanes)`` beats of ``lanes``
elements (:func:`frame_beats`); element 0 sits in the least significant bits, each element
``bits`` wide (two's complement when signed). A binary (``bipolar``) element is one bit, 1
meaning +1 and 0 meaning -1: the stream carries the bit, the arithmetic uses the value. Lanes
past the end of a vector in its last beat are padding: producers drive them to zero and
consumers ignore them.

Dense layers see one vector per frame (``pixels == 1``). Feature maps travel channels-last:
pixel ``(y, x)`` of an ``h x w x c`` map is vector ``y * w + x``, its ``c`` channels the
elements; a convolution is a :class:`Pad` (when it pads), a :class:`SlidingWindow` turning
pixels into windows (one vector of ``kh * kw * c`` elements per output pixel, in ``(ky, kx,
c)`` order) and an :class:`MVAU` applied to every window; a max-pool is a
:class:`SlidingWindow` and a :class:`MaxPool` reducing each window channel by channel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "FIFO",
    "MVAU",
    "Dataflow",
    "InputQuant",
    "LabelSelect",
    "MaxPool",
    "Pad",
    "SlidingWindow",
    "WidthConverter",
    "bits_for_range",
    "flattens",
    "frame_beats",
    "int_range",
    "window_bound",
]


def int_range(bits: int, signed: bool, narrow: bool = False) -> tuple[int, int]:
    """The integer range ``(lo, hi)`` of a ``bits``-wide quantizer (Brevitas/QONNX convention)."""
    if signed:
        return -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1 - int(narrow)


def frame_beats(n: int, pixels: int, lanes: int) -> int:
    """Beats of a frame of ``n`` elements in ``pixels`` vectors, ``lanes`` per beat."""
    return pixels * math.ceil(n // pixels / lanes)


def window_bound(layers) -> int | None:
    """The fewest cycles per frame any folding of a CNN's feature-map layers allows, None
    without sliding windows. A window generator sends at most one beat per cycle, at most a
    pixel's ``c`` channels: ``max(h * w, out_h * out_w * kh * kw)`` cycles with ``lanes =
    c``; a convolution's MVAU needs its activation's ``steps`` per window even with every
    lane (``pixels * steps``); pads and max-pools one cycle per pixel or window pixel. (For
    a convolution this bound, not the weight bandwidth, is the one that matters: its
    weights are read again at every pixel.)"""
    if not any(isinstance(layer, SlidingWindow) for layer in layers):
        return None
    bounds = []
    for layer in layers:
        if isinstance(layer, SlidingWindow):
            bounds.append(max(layer.h * layer.w, layer.out_h * layer.out_w * layer.window))
        elif isinstance(layer, MVAU) and layer.pixels > 1:
            bounds.append(layer.pixels * layer.steps)
        elif isinstance(layer, MaxPool):
            bounds.append(layer.pixels * layer.window)
        elif isinstance(layer, Pad):
            bounds.append(layer.out_h * layer.out_w)
    return max(bounds)


def flattens(a, b) -> bool:
    """Whether layer ``b`` reads layer ``a``'s feature map flattened: ``a`` sends
    ``pixels > 1`` vectors, ``b`` takes one, and the beats are the same because ``a``'s lanes
    divide each pixel's elements (no padding lanes inside the frame)."""
    return (a.pixels_out > 1 and b.pixels_in == 1 and a.n_out == b.n_in
            and (a.n_out // a.pixels_out) % a.lanes_out == 0)


def _check_positive(name: str, **values):
    for what, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: {what}={value!r} must be a positive integer")


def bits_for_range(lo: int, hi: int) -> tuple[int, bool]:
    """The narrowest ``(bits, signed)`` two's complement shape that holds every integer in
    ``[lo, hi]``."""
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise ValueError(f"empty range [{lo}, {hi}]")
    if lo >= 0:
        return max(1, hi.bit_length()), False
    return max((-lo - 1).bit_length(), hi.bit_length()) + 1, True


@dataclass(eq=False)
class InputQuant:
    """The model's first quantizer. It runs on the host side (golden model, tests, ``hwgen
    run``): the accelerator consumes its integers.

    ``q = clamp(round_half_even(x / scale + zero_point), lo, hi)`` in float32; a ``bipolar``
    quantizer sends the bit ``x >= threshold`` (1 meaning +1, 0 meaning -1).
    """

    shape: tuple[int, ...]
    bits: int
    signed: bool
    narrow: bool
    scale: float
    zero_point: float = 0.0
    bipolar: bool = False
    threshold: float = 0.0

    @property
    def stream_range(self) -> tuple[int, int]:
        """The smallest and largest integer the accelerator receives (for ``bipolar``, the
        bits 0 and 1; :attr:`hwgen.compiler.ir.Quant.range` is the values -1 and +1)."""
        if self.bipolar:
            return 0, 1
        return int_range(self.bits, self.signed, self.narrow)

    def dequantize(self, q) -> np.ndarray:
        """Float inputs (float32) that this quantizer maps to the integers ``q``."""
        q = np.asarray(q)
        if self.bipolar:
            t = np.float32(self.threshold)
            return np.where(q > 0, t, np.nextafter(t, np.float32(-np.inf))).astype(np.float32)
        return ((q - self.zero_point) * np.float32(self.scale)).astype(np.float32)

    @property
    def n(self) -> int:
        return math.prod(self.shape)

    def from_stream(self, q) -> np.ndarray:
        """The inverse of :meth:`to_stream`: ``[N, n]`` in the model's order."""
        q = np.asarray(q)
        if len(self.shape) == 3:
            c, h, w = self.shape
            q = q.reshape(len(q), h, w, c).transpose(0, 3, 1, 2)
        return q.reshape(len(q), -1)

    def to_stream(self, q) -> np.ndarray:
        """``q`` (``[N, *shape]`` or flat ``[N, n]``, in the model's order) in stream order,
        ``[N, n]``: an image ``[c, h, w]`` goes channels-last, pixel by pixel."""
        q = np.asarray(q)
        if len(self.shape) == 3:
            q = q.reshape(len(q), *self.shape).transpose(0, 2, 3, 1)
        return q.reshape(len(q), -1)


@dataclass(eq=False)
class MVAU:
    """Matrix-vector-activation unit: ``acc = weights @ x``, then either thresholds or a bias.

    With ``thresholds`` (shape ``[mh, 2**out_bits - 1]``, each row non-decreasing) the output
    is ``out_base + sum_k [acc_c >= thresholds[c, k]]``; without, it is ``acc + bias``
    (integer logits). Weight rows are already sign-adjusted by the compiler (a row whose
    activation decreases with ``acc`` is negated), so every threshold map is non-decreasing.

    Binary layers: with ``in_bipolar`` the input elements are bits meaning ``2*bit - 1``; with
    ``weight_bipolar`` the weights are ``-1``/``+1`` (``weight_bits=1``). When both hold
    (:attr:`xnor`) the hardware computes ``acc = 2*popcount(XNOR(x, w)) - mw`` and compares the
    popcount with :attr:`stored_thresholds`. An activation to binary (``out_bipolar``) has
    ``out_bits=1`` and ``out_base=0``: its output is the bit ``acc >= T``.

    Folding: ``pe`` output lanes and ``simd`` input lanes. ``nf = ceil(mh / pe)`` neuron folds
    of ``sf = ceil(mw / simd)`` synapse folds; the activation of each neuron fold takes
    ``steps`` cycles (a binary search over the thresholds, one comparison per output bit) and
    overlaps the next fold's accumulation, hence ``cycles = nf * max(sf, steps)``. With
    :attr:`gather` a fold takes only the slots its nonzero weights need
    (:attr:`fold_lengths`, :attr:`cycles`).
    """

    name: str
    weights: np.ndarray  # int64 [mh, mw]
    in_bits: int
    in_signed: bool
    weight_bits: int
    weight_signed: bool
    acc_bits: int
    out_bits: int
    out_signed: bool
    thresholds: np.ndarray | None = None  # int64 [mh, 2**out_bits - 1]
    out_base: int = 0
    bias: np.ndarray | None = None  # int64 [mh], only without thresholds
    pe: int = 1
    simd: int = 1
    # Where memories live, by purpose ("weights", "thresholds", "input_buffer") -> "block" or
    # "logic"; the memory plan's default rule decides the rest.
    styles: dict = field(default_factory=dict)
    #: The board's block RAM kind (:class:`hwgen.compiler.memory.BlockRAM`), set by folding.
    block_ram: object = None
    # Bookkeeping for reports: which source nodes this layer came from.
    source: str = ""
    in_bipolar: bool = False
    weight_bipolar: bool = False
    out_bipolar: bool = False
    #: Which of the source node's neurons the rows compute, when structured pruning
    #: (:mod:`hwgen.compiler.prune`) removed some; None: all of them, in order.
    neurons: list | None = None
    #: Gather lanes (unstructured sparsity, docs/pruning.md): each PE walks only the nonzero
    #: weights of its neuron, ``simd`` per slot, and every lane reads its input element from
    #: its own copy of the double-buffered input frame at the column stored with the weight.
    gather: bool = False
    #: Vectors per frame: 1 for a dense layer, the output pixels of a convolution (the
    #: windows of its :class:`SlidingWindow`), each multiplied by the same weights.
    pixels: int = 1

    def __post_init__(self):
        _check_positive(self.name, pixels=self.pixels)
        self.weights = np.asarray(self.weights, dtype=np.int64)
        if self.weights.ndim != 2:
            raise ValueError(f"{self.name}: weights must be 2-D, not {self.weights.shape}")
        if self.weight_bipolar:
            if self.weight_bits != 1 or not np.all(np.abs(self.weights) == 1):
                raise ValueError(f"{self.name}: binary weights must be -1 or +1, one bit each")
        else:
            wlo, whi = int_range(self.weight_bits, self.weight_signed)
            if self.weights.size and (self.weights.min() < wlo or self.weights.max() > whi):
                raise ValueError(f"{self.name}: weights outside the {self.weight_bits}-bit "
                                 f"range")
        if self.in_bipolar and self.in_bits != 1:
            raise ValueError(f"{self.name}: binary inputs are one bit, not {self.in_bits}")
        if self.out_bipolar and (self.thresholds is None or self.out_bits != 1
                                 or self.out_base != 0):
            raise ValueError(f"{self.name}: a binary output is one threshold bit")
        if self.thresholds is not None:
            self.thresholds = np.asarray(self.thresholds, dtype=np.int64)
            expect = (self.mh, 2**self.out_bits - 1)
            if self.thresholds.shape != expect:
                raise ValueError(f"{self.name}: thresholds have shape "
                                 f"{self.thresholds.shape}, expected {expect}")
            if np.any(np.diff(self.thresholds, axis=1) < 0):
                raise ValueError(f"{self.name}: threshold rows must be non-decreasing")
            if self.bias is not None:
                raise ValueError(f"{self.name}: a layer has thresholds or a bias, not both")
        if self.bias is not None:
            self.bias = np.asarray(self.bias, dtype=np.int64)
        self.check_folding()

    def check_folding(self):
        for what, value, limit in (("pe", self.pe, self.mh), ("simd", self.simd, self.mw)):
            if not isinstance(value, int) or not 1 <= value <= limit:
                raise ValueError(f"{self.name}: {what}={value!r} must be an integer in "
                                 f"1..{limit}")
        if self.gather and self.weight_bipolar:
            raise ValueError(f"{self.name}: binary weights have no zeros to skip; gather lanes "
                             f"need integer weights")
        if self.gather and self.pixels > 1:
            raise ValueError(f"{self.name}: gather lanes are for dense layers, not "
                             f"convolutions ({self.pixels} windows per frame)")

    @property
    def mh(self) -> int:
        return self.weights.shape[0]

    @property
    def mw(self) -> int:
        return self.weights.shape[1]

    @property
    def nf(self) -> int:
        return math.ceil(self.mh / self.pe)

    @property
    def sf(self) -> int:
        return math.ceil(self.mw / self.simd)

    @property
    def steps(self) -> int:
        """Cycles the activation of one neuron fold takes."""
        return self.out_bits if self.thresholds is not None else 1

    @property
    def fold_slots(self) -> list[int]:
        """Per neuron fold, the slots that multiply: ``sf`` each; with :attr:`gather`, the
        most nonzero weights of one of the fold's neurons over ``simd`` (at least one)."""
        if not self.gather:
            return [self.sf] * self.nf
        nonzero = np.count_nonzero(self.weights, axis=1)
        return [max(1, math.ceil(int(nonzero[n * self.pe:(n + 1) * self.pe].max())
                                 / self.simd)) for n in range(self.nf)]

    @property
    def fold_lengths(self) -> list[int]:
        """Cycles each neuron fold takes: ``max(fold_slots[n], steps)`` (the activation of a
        fold overlaps the next one). With :attr:`gather`, a frame's ``sf`` input beats fill
        one bank of the frame buffer while the other is computed, and a bank is handed back a
        cycle after its last slot; when the folds would take exactly ``sf`` cycles, filling
        and computing would take turns being late, so the last fold gets an idle slot."""
        lengths = [max(slots, self.steps) for slots in self.fold_slots]
        if self.gather and sum(lengths) == self.sf:
            lengths[-1] += 1
        return lengths

    @property
    def cycles(self) -> int:
        """Cycles per frame in steady state: the one formula shared by the folding pass, the
        report, the hardware and the tests; with :attr:`gather`, filling a bank of the frame
        buffer (``sf`` cycles) may be the longer part. A convolution repeats it for each of
        its ``pixels`` windows."""
        compute = sum(self.fold_lengths)
        return self.pixels * (max(compute, self.sf) if self.gather else compute)

    @property
    def xnor(self) -> bool:
        """Binary weights and binary inputs: XNOR-popcount hardware, no multipliers."""
        return self.in_bipolar and self.weight_bipolar

    @property
    def stored_thresholds(self) -> np.ndarray | None:
        """The thresholds as the hardware compares them: on ``acc``, or in XNOR mode on the
        popcount ``P = (acc + mw) / 2``, where ``acc >= T`` is ``P >= ceil((T + mw) / 2)``
        (clipped to ``[0, mw + 1]``: always and never)."""
        if self.thresholds is None or not self.xnor:
            return self.thresholds
        return np.clip(-((-(self.thresholds + self.mw)) // 2), 0, self.mw + 1)

    @property
    def threshold_bits(self) -> int:
        """Width of the stored thresholds (signed)."""
        stored = self.stored_thresholds
        if stored is None:
            return 0
        return bits_for_range(min(int(stored.min()), -1), int(stored.max()))[0]

    # Stream shapes.
    @property
    def n_in(self) -> int:
        return self.pixels * self.mw

    @property
    def n_out(self) -> int:
        return self.pixels * self.mh

    pixels_in = property(lambda self: self.pixels)
    pixels_out = property(lambda self: self.pixels)

    @property
    def lanes_in(self) -> int:
        return self.simd

    @property
    def lanes_out(self) -> int:
        return self.pe


@dataclass(eq=False)
class LabelSelect:
    """Argmax over ``n`` integer logits arriving ``lanes`` per beat; the lowest index wins
    ties. Output: one beat of one element, ``out_bits = max(1, ceil(log2(n)))`` wide,
    unsigned. ``cycles = ceil(n / lanes)``."""

    name: str
    n: int
    in_bits: int
    in_signed: bool
    lanes: int = 1
    source: str = ""

    @property
    def out_bits(self) -> int:
        return max(1, (self.n - 1).bit_length())

    out_signed = False

    @property
    def cycles(self) -> int:
        return math.ceil(self.n / self.lanes)

    n_in = property(lambda self: self.n)
    n_out = property(lambda self: 1)
    lanes_in = property(lambda self: self.lanes)
    lanes_out = property(lambda self: 1)
    pixels_in = pixels_out = 1


class _ValuePreserving:
    """Stream plumbing: ``n`` elements of ``bits`` (``signed``) in ``pixels`` vectors in, the
    same out."""

    n_in = property(lambda self: self.n)
    n_out = property(lambda self: self.n)
    pixels_in = property(lambda self: self.pixels)
    pixels_out = property(lambda self: self.pixels)
    in_bits = property(lambda self: self.bits)
    out_bits = property(lambda self: self.bits)
    in_signed = property(lambda self: self.signed)
    out_signed = property(lambda self: self.signed)


@dataclass(eq=False)
class WidthConverter(_ValuePreserving):
    """Repacks each vector of a frame (``n`` elements of ``bits`` each in ``pixels``
    vectors) from ``lanes_in`` to ``lanes_out`` elements per beat. Identity on values.
    ``cycles = pixels * max(ceil(v/lanes_in), ceil(v/lanes_out))``, ``v = n // pixels``."""

    name: str
    n: int
    bits: int
    signed: bool
    lanes_in: int
    lanes_out: int
    pixels: int = 1

    @property
    def cycles(self) -> int:
        return max(frame_beats(self.n, self.pixels, self.lanes_in),
                   frame_beats(self.n, self.pixels, self.lanes_out))


@dataclass(eq=False)
class FIFO(_ValuePreserving):
    """A FIFO of ``depth`` beats between two layers. Identity on values; one beat per
    cycle."""

    name: str
    n: int
    bits: int
    signed: bool
    lanes: int
    depth: int
    styles: dict = field(default_factory=dict)
    #: The board's block RAM kind (:class:`hwgen.compiler.memory.BlockRAM`), set by folding.
    block_ram: object = None
    pixels: int = 1

    @property
    def cycles(self) -> int:
        return frame_beats(self.n, self.pixels, self.lanes)

    lanes_in = property(lambda self: self.lanes)
    lanes_out = property(lambda self: self.lanes)


@dataclass(eq=False)
class Pad:
    """Adds a border of ``pads = (top, left, bottom, right)`` pixels around each ``h x w x c``
    feature map (channels-last, ``lanes`` channels per beat), every padding element carrying
    the integer ``value``. A zero-padded integer map pads with 0; a binary map carries bits,
    so its pad is the bit of the model's own pad value (1 for +1, 0 for -1: the model must
    pad with +-1, see :class:`hwgen.nn.BinaryConv2d`).
    ``cycles = (h + top + bottom) * (w + left + right) * ceil(c / lanes)``: one output beat
    per cycle."""

    name: str
    h: int
    w: int
    c: int
    pads: tuple
    value: int
    bits: int
    signed: bool
    lanes: int = 1
    source: str = ""

    def __post_init__(self):
        self.pads = tuple(int(p) for p in self.pads)
        _check_positive(self.name, h=self.h, w=self.w, c=self.c, bits=self.bits,
                        lanes=self.lanes)
        if len(self.pads) != 4 or min(self.pads) < 0:
            raise ValueError(f"{self.name}: pads={self.pads!r} must be four non-negative "
                             f"integers (top, left, bottom, right)")
        lo, hi = int_range(self.bits, self.signed)
        if not lo <= self.value <= hi:
            raise ValueError(f"{self.name}: pad value {self.value} does not fit the "
                             f"{self.bits}-bit stream")

    @property
    def out_h(self) -> int:
        return self.h + self.pads[0] + self.pads[2]

    @property
    def out_w(self) -> int:
        return self.w + self.pads[1] + self.pads[3]

    n_in = property(lambda self: self.h * self.w * self.c)
    n_out = property(lambda self: self.out_h * self.out_w * self.c)
    pixels_in = property(lambda self: self.h * self.w)
    pixels_out = property(lambda self: self.out_h * self.out_w)
    in_bits = out_bits = property(lambda self: self.bits)
    in_signed = out_signed = property(lambda self: self.signed)
    lanes_in = lanes_out = property(lambda self: self.lanes)

    @property
    def cycles(self) -> int:
        return frame_beats(self.n_out, self.pixels_out, self.lanes)

    @property
    def border_run(self) -> int:
        """The most border beats the pad sends in a row, taking no input meanwhile: a
        frame's last row's right border, its bottom rows, the next frame's top rows and
        left border; or a row's right border and the next row's left one."""
        top, left, bottom, right = self.pads
        groups = math.ceil(self.c / self.lanes)
        return groups * max(right + (bottom + top) * self.out_w + left, right + left)


@dataclass(eq=False)
class SlidingWindow:
    """The sliding-window generator (im2col as a stream): from an ``h x w x c`` map
    (channels-last, ``lanes`` channels per beat, ``lanes`` dividing ``c``) it sends, for every
    output pixel ``(oy, ox)`` in raster order, the window of ``kernel = (kh, kw)`` pixels at
    ``(oy * sh, ox * sw)`` (``stride = (sh, sw)``) as one vector of ``kh * kw * c`` elements in
    ``(ky, kx, c)`` order. ``out_h = (h - kh) // sh + 1`` (rows and columns past the last
    window are read and dropped, as PyTorch does).

    A line buffer (:attr:`buffer_rows` rows of ``w * c`` elements, block RAM as the memory plan
    says) holds the rows windows still need; a frame's first window waits for its last pixel.
    ``cycles = max(h * w, out_h * out_w * kh * kw) * c / lanes``: the buffer keeps the input
    and output sides busy at once in steady state."""

    name: str
    h: int
    w: int
    c: int
    kernel: tuple
    stride: tuple
    bits: int
    signed: bool
    lanes: int = 1
    styles: dict = field(default_factory=dict)
    block_ram: object = None
    source: str = ""

    def __post_init__(self):
        self.kernel = tuple(int(k) for k in self.kernel)
        self.stride = tuple(int(k) for k in self.stride)
        _check_positive(self.name, h=self.h, w=self.w, c=self.c, bits=self.bits,
                        lanes=self.lanes, kh=self.kernel[0], kw=self.kernel[1],
                        sh=self.stride[0], sw=self.stride[1])
        if self.kernel[0] > self.h or self.kernel[1] > self.w:
            raise ValueError(f"{self.name}: a {self.kernel[0]}x{self.kernel[1]} window does "
                             f"not fit a {self.h}x{self.w} map")
        self.check_folding()

    def check_folding(self):
        if not isinstance(self.lanes, int) or self.lanes < 1 or self.c % self.lanes:
            raise ValueError(f"{self.name}: lanes={self.lanes!r} must divide the {self.c} "
                             f"channels")

    @property
    def out_h(self) -> int:
        return (self.h - self.kernel[0]) // self.stride[0] + 1

    @property
    def out_w(self) -> int:
        return (self.w - self.kernel[1]) // self.stride[1] + 1

    @property
    def window(self) -> int:
        """Pixels per window, ``kh * kw``."""
        return self.kernel[0] * self.kernel[1]

    @property
    def used_rows(self) -> int:
        """Input rows any window reads; the rest of a frame is dropped, not buffered."""
        return (self.out_h - 1) * self.stride[0] + self.kernel[0]

    @property
    def buffer_rows(self) -> int:
        """Rows the line buffer holds: the ``kh`` rows windows read, and room for the input
        side to fill the next window's rows meanwhile (at most the rows a frame uses)."""
        return min(self.kernel[0] + max(self.stride[0], self.kernel[0]), 2 * self.used_rows)

    n_in = property(lambda self: self.h * self.w * self.c)
    n_out = property(lambda self: self.out_h * self.out_w * self.window * self.c)
    pixels_in = property(lambda self: self.h * self.w)
    pixels_out = property(lambda self: self.out_h * self.out_w)
    in_bits = out_bits = property(lambda self: self.bits)
    in_signed = out_signed = property(lambda self: self.signed)
    lanes_in = lanes_out = property(lambda self: self.lanes)

    @property
    def cycles(self) -> int:
        groups = self.c // self.lanes
        return max(self.h * self.w, self.out_h * self.out_w * self.window) * groups


@dataclass(eq=False)
class MaxPool:
    """The largest element of each channel over each window of a :class:`SlidingWindow`:
    ``pixels`` windows of ``window`` pixels of ``c`` channels in, ``pixels`` vectors of ``c``
    out, ``lanes`` channels per beat (``lanes`` divides ``c``). On a binary stream the bits
    order as their values (1 is +1). ``cycles = pixels * window * c / lanes``, the input
    beats."""

    name: str
    pixels: int
    window: int
    c: int
    bits: int
    signed: bool
    lanes: int = 1
    source: str = ""

    def __post_init__(self):
        _check_positive(self.name, pixels=self.pixels, window=self.window, c=self.c,
                        bits=self.bits, lanes=self.lanes)
        self.check_folding()

    def check_folding(self):
        if not isinstance(self.lanes, int) or self.lanes < 1 or self.c % self.lanes:
            raise ValueError(f"{self.name}: lanes={self.lanes!r} must divide the {self.c} "
                             f"channels")

    n_in = property(lambda self: self.pixels * self.window * self.c)
    n_out = property(lambda self: self.pixels * self.c)
    pixels_in = pixels_out = property(lambda self: self.pixels)
    in_bits = out_bits = property(lambda self: self.bits)
    in_signed = out_signed = property(lambda self: self.signed)
    lanes_in = lanes_out = property(lambda self: self.lanes)

    @property
    def cycles(self) -> int:
        return self.pixels * self.window * self.c // self.lanes


@dataclass(eq=False)
class Dataflow:
    """A chain of hardware layers fed by the host-side input quantizer.

    The top-level input stream carries ``layers[0].lanes_in`` elements of
    ``layers[0].in_bits`` per beat; the output stream carries the last layer's output. Each
    MVAU's ``source`` names the node of the source model whose quantized output it
    reproduces (used to compare with PyTorch).
    """

    name: str
    input: InputQuant
    layers: list = field(default_factory=list)
    # Extra information the front end found (scales of logits, the source format...).
    meta: dict = field(default_factory=dict)

    @property
    def compute_layers(self) -> list:
        return [layer for layer in self.layers if not isinstance(layer, (FIFO, WidthConverter))]

    @property
    def cycles_per_frame(self) -> int:
        """Steady-state cycles per frame: the slowest layer sets the pace."""
        return max(layer.cycles for layer in self.layers)

    @property
    def outputs_logits(self) -> bool:
        return not isinstance(self.layers[-1], LabelSelect)

    def layer(self, name: str):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)
