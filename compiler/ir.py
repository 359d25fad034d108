"""The intermediate representation between a front end and the streamlining passes.

A :class:`Graph` is a chain of nodes applied one after another to a batch ``[N, features]``
or, for convolutional models, ``[N, C, H, W]`` until the first linear layer:

* :class:`Quant`: a per-tensor quantizer (integers ``q`` in ``range``, value ``q * scale``), a
  binarizer (``bipolar``: ``q = +1`` where ``x >= threshold``, else ``-1``), or a quantizer
  with explicit per-channel ``thresholds`` (QONNX's ``MultiThreshold``);
* :class:`Linear`: ``y = x @ (weight * weight_scale).T`` with integer ``weight``;
* :class:`Conv`: a 2-D convolution with integer ``weight`` (no padding: a :class:`Pad` before
  it carries that);
* :class:`Pad`: a constant border around a feature map;
* :class:`MaxPool`: the largest value of each channel over each window;
* :class:`FloatOp`: one float32 operation of the source model (bias add, batch norm, ReLU,
  scaling...) applied to the running tensor, with all other operands constant. Calling it runs
  the model's own op, so passes can evaluate the model's exact arithmetic.

Every node keeps the name of the source node it came from (``name``), for error messages and
for comparing with the source model. Shape-only ops (flatten, view, reshape) do not appear: a
:class:`Linear` after a feature map reads it flattened channel-first, as PyTorch does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Conv", "FloatOp", "Graph", "Linear", "MaxPool", "Pad", "Quant", "X", "int_range"]


def int_range(bits: int, signed: bool, narrow: bool = False) -> tuple[int, int]:
    """The integer range ``(lo, hi)`` of a ``bits``-wide quantizer."""
    if signed:
        return -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1 - int(narrow)


class _Running:
    """Placeholder for the running tensor among a :class:`FloatOp`'s arguments."""

    def __repr__(self):
        return "X"


#: The running tensor in :attr:`FloatOp.args`.
X = _Running()


@dataclass(eq=False)
class Quant:
    """``q = clamp(round_half_even(x / scale), lo, hi)``; the value carried on is ``q * scale``
    (zero points are always 0 in the IR). A ``bipolar`` quantizer (``bits=1``, unsigned: the
    stream carries a bit) gives ``q = +1`` where ``x >= threshold`` and ``-1`` elsewhere.

    With ``thresholds`` (float32 ``[C, n]``, or ``[1, n]`` for all channels), the level is the
    number of channel ``c``'s thresholds ``x`` reaches: ``q = lo + #{k: x >= thresholds[c, k]}``
    (a bipolar one has one threshold per channel: ``-1`` below it, ``+1`` from it)."""

    name: str
    bits: int
    signed: bool
    narrow: bool
    scale: float
    bipolar: bool = False
    threshold: float = 0.0
    thresholds: np.ndarray | None = None

    @property
    def range(self) -> tuple[int, int]:
        """The smallest and largest integer ``q``."""
        if self.bipolar:
            return -1, 1
        return int_range(self.bits, self.signed, self.narrow)


@dataclass(eq=False)
class Linear:
    """``y = x @ (weight * weight_scale).T``; ``weight`` holds the integers of the weight
    quantizer (``[out_features, in_features]``), ``weight_scale`` is one number or one per
    output feature."""

    name: str
    weight: np.ndarray
    weight_scale: float | np.ndarray
    weight_bits: int
    weight_signed: bool
    weight_narrow: bool
    #: Weights in ``{-1, +1}`` (one bit each).
    weight_bipolar: bool = False

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]


@dataclass(eq=False)
class Conv:
    """``y = conv2d(x, weight * weight_scale, stride)`` without padding; ``weight`` holds the
    integers of the weight quantizer (``[out_channels, in_channels, kh, kw]``);
    ``weight_scale`` is one number or one per output channel."""

    name: str
    weight: np.ndarray
    weight_scale: float | np.ndarray
    weight_bits: int
    weight_signed: bool
    weight_narrow: bool
    stride: tuple
    weight_bipolar: bool = False

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1]

    @property
    def kernel(self) -> tuple[int, int]:
        return tuple(self.weight.shape[2:])


@dataclass(eq=False)
class Pad:
    """A border of ``pads = (top, left, bottom, right)`` pixels carrying the float ``value``
    (``-inf`` for a max-pool's padding)."""

    name: str
    pads: tuple
    value: float


@dataclass(eq=False)
class MaxPool:
    """The largest value of each channel over ``kernel`` windows at ``stride`` steps (no
    padding: a :class:`Pad` of ``-inf`` before it carries that)."""

    name: str
    kernel: tuple
    stride: tuple


@dataclass(eq=False)
class FloatOp:
    """One float operation of the source model: ``target(*args, **kwargs)`` with :data:`X`
    standing for the running tensor; ``index`` picks one result of an op returning a tuple."""

    name: str
    target: Any
    args: tuple
    kwargs: dict = field(default_factory=dict)
    index: int | None = None

    @property
    def op(self) -> str:
        return str(self.target)

    def __call__(self, x):
        def sub(a):
            if a is X:
                return x
            if isinstance(a, (list, tuple)):
                return type(a)(sub(b) for b in a)
            return a
        out = self.target(*sub(self.args), **{k: sub(v) for k, v in self.kwargs.items()})
        return out if self.index is None else out[self.index]


@dataclass(eq=False)
class Graph:
    """A chain of :class:`Quant`, :class:`Linear`, :class:`Conv`, :class:`Pad`,
    :class:`MaxPool` and :class:`FloatOp` nodes.

    ``input_shape`` is the shape of one input sample; ``output`` the name of the source node
    whose value the graph returns; ``meta`` what the front end found (the format...)."""

    name: str
    input_shape: tuple[int, ...]
    nodes: list = field(default_factory=list)
    output: str = ""
    meta: dict = field(default_factory=dict)

    def __str__(self):
        lines = [f"graph {self.name} (input {self.input_shape}) -> {self.output}"]
        for node in self.nodes:
            if isinstance(node, Quant) and node.thresholds is not None:
                lines.append(f"  {node.name}: multi-threshold {node.thresholds.shape[1]} "
                             f"thresholds -> {'bipolar' if node.bipolar else node.bits} "
                             f"scale={node.scale}")
            elif isinstance(node, Quant) and node.bipolar:
                lines.append(f"  {node.name}: bipolar threshold={node.threshold} "
                             f"scale={node.scale}")
            elif isinstance(node, Quant):
                lines.append(f"  {node.name}: quant {node.bits}b signed={node.signed} "
                             f"narrow={node.narrow} scale={node.scale}")
            elif isinstance(node, Linear):
                kind = "binary" if node.weight_bipolar else f"w{node.weight_bits}"
                lines.append(f"  {node.name}: linear {node.in_features}->{node.out_features} "
                             f"{kind} scale={node.weight_scale}")
            elif isinstance(node, Conv):
                kind = "binary" if node.weight_bipolar else f"w{node.weight_bits}"
                lines.append(f"  {node.name}: conv {node.in_channels}->{node.out_channels} "
                             f"kernel {node.kernel} stride {node.stride} {kind} "
                             f"scale={node.weight_scale}")
            elif isinstance(node, Pad):
                lines.append(f"  {node.name}: pad {node.pads} value={node.value}")
            elif isinstance(node, MaxPool):
                lines.append(f"  {node.name}: max-pool {node.kernel} stride {node.stride}")
            else:
                lines.append(f"  {node.name}: {node.op}")
        return "\n".join(lines)
