"""Quantization-aware layers that hwgen can compile.

Every quantizer in these layers calls one custom operator, ``hwgen::quant``, registered with
:mod:`torch.library`. It survives :func:`torch.export.export`, :func:`torch.export.save` and
:func:`torch.export.load` (importing :mod:`hwgen.nn` registers it), so the compiler finds the
quantization of a model in its exported ATen graph::

    hwgen::quant(Tensor x, Tensor scale, Tensor zero_point, int bits, bool signed, bool narrow)
        -> Tensor

returns the dequantized value ``(clamp(round_half_even(x/scale + zp), qmin, qmax) - zp) * scale``
computed in float32 (Brevitas/QONNX convention). Its gradient is the straight-through estimator:
the incoming gradient passes where ``x`` was not clamped, zero elsewhere.

Binarized layers use a second operator, ``hwgen::bipolar``::

    hwgen::bipolar(Tensor x, Tensor scale, Tensor threshold) -> Tensor

which returns ``+scale`` where ``x >= threshold`` and ``-scale`` elsewhere (so sign(0) = +1), in
float32. Its gradient is the straight-through estimator of binarized networks: the incoming
gradient passes where ``|x - threshold| <= 1``.

All scales are powers of two. Products and sums of dequantized values are then exact in
float32, so ``F.linear(x, Wq)`` equals ``acc * s_in * s_w`` exactly and the PyTorch model and
hwgen's integer golden model agree bit for bit.

Layers
------
:class:`QuantIdentity`
    Quantizes its input (use it first, on the raw input).
:class:`QuantLinear`
    A bias-free (or integer-bias) linear layer with narrow signed per-tensor weights.
:class:`QuantReLU`
    ReLU followed by an unsigned quantizer.
:class:`BinaryInput`
    Binarizes its input at a threshold (e.g. pixels ``>= 128`` are +1, the rest -1).
:class:`BinaryLinear`
    A linear layer with weights in ``{-1, +1}`` (the sign of the latent float weights).
:class:`SignActivation`
    ``+1`` where ``x >= 0``, ``-1`` elsewhere.
:class:`QuantConv2d`
    A 2-D convolution with narrow signed per-tensor weights, any kernel size, stride and zero
    padding.
:class:`BinaryConv2d`
    A 2-D convolution with weights in ``{-1, +1}``; its padding carries ``+1`` or ``-1``
    (``pad_value``), since a binary stream has no 0.

Standard :class:`torch.nn.BatchNorm1d` (after a linear layer) and :class:`torch.nn.BatchNorm2d`
(after a convolution) may sit between a layer and its activation (:class:`QuantReLU` or
:class:`SignActivation`); hwgen folds them into integer thresholds. :class:`torch.nn.MaxPool2d`
goes after an activation quantizer (it picks among integers), and :class:`torch.nn.Flatten`
(or ``x.view(len(x), -1)``) before the first linear layer after a convolution: hwgen reorders
that layer's weights to the hardware's channels-last stream, so the model keeps PyTorch's
channel-first flatten. ``MaxPool2d``, ``Flatten`` and ``BatchNorm2d`` are re-exported here for
convenience. A layer with binary weights and binary inputs becomes XNOR-popcount hardware; the
kinds mix freely (e.g. an 8-bit first layer feeding binary hidden layers).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import BatchNorm2d, Flatten, MaxPool2d

__all__ = [
    "BatchNorm2d",
    "BinaryConv2d",
    "BinaryInput",
    "BinaryLinear",
    "Flatten",
    "MaxPool2d",
    "QuantConv2d",
    "QuantIdentity",
    "QuantLinear",
    "QuantReLU",
    "SignActivation",
    "bipolar",
    "int_range",
    "quant",
    "weight_scale",
]


def int_range(bits: int, signed: bool, narrow: bool = False) -> tuple[int, int]:
    """The integer range ``(qmin, qmax)`` of a ``bits``-wide quantizer."""
    if signed:
        return -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1 - int(narrow)


def _check_args(bits: int, signed: bool, narrow: bool):
    if not isinstance(bits, int) or not 1 <= bits <= 32:
        raise ValueError(f"hwgen::quant: bits={bits!r} must be an integer in 1..32")
    if bits == 1 and not signed and narrow:
        raise ValueError("hwgen::quant: a 1-bit unsigned narrow quantizer has a single level")


@torch.library.custom_op("hwgen::quant", mutates_args=())
def quant(x: Tensor, scale: Tensor, zero_point: Tensor, bits: int, signed: bool,
          narrow: bool) -> Tensor:
    """Quantize and dequantize ``x``: ``(clamp(round_half_even(x/scale + zp), qmin, qmax) - zp)
    * scale`` in float32."""
    _check_args(bits, signed, narrow)
    lo, hi = int_range(bits, signed, narrow)
    x = x.to(torch.float32)
    scale = scale.to(torch.float32)
    zero_point = zero_point.to(torch.float32)
    q = torch.clamp(torch.round(x / scale + zero_point), lo, hi)
    return (q - zero_point) * scale


@quant.register_fake
def _quant_fake(x, scale, zero_point, bits, signed, narrow):
    return torch.empty_like(x, dtype=torch.float32)


def _quant_setup_context(ctx, inputs, output):
    x, scale, zero_point, bits, signed, narrow = inputs
    ctx.save_for_backward(x, scale, zero_point)
    ctx.qrange = int_range(bits, signed, narrow)


def _quant_backward(ctx, grad):
    x, scale, zero_point = ctx.saved_tensors
    lo, hi = ctx.qrange
    y = torch.round(x.to(torch.float32) / scale + zero_point)
    inside = (y >= lo) & (y <= hi)
    return grad * inside.to(grad.dtype), None, None, None, None, None


quant.register_autograd(_quant_backward, setup_context=_quant_setup_context)


@torch.library.custom_op("hwgen::bipolar", mutates_args=())
def bipolar(x: Tensor, scale: Tensor, threshold: Tensor) -> Tensor:
    """Binarize ``x``: ``+scale`` where ``x >= threshold``, ``-scale`` elsewhere, in float32."""
    x = x.to(torch.float32)
    scale = scale.to(torch.float32)
    return torch.where(x >= threshold.to(torch.float32), scale, -scale)


@bipolar.register_fake
def _bipolar_fake(x, scale, threshold):
    return torch.empty_like(x, dtype=torch.float32)


def _bipolar_setup_context(ctx, inputs, output):
    x, _, threshold = inputs
    ctx.save_for_backward(x, threshold)


def _bipolar_backward(ctx, grad):
    x, threshold = ctx.saved_tensors
    inside = (x.to(torch.float32) - threshold).abs() <= 1
    return grad * inside.to(grad.dtype), None, None


bipolar.register_autograd(_bipolar_backward, setup_context=_bipolar_setup_context)


def _check_pow2(what: str, scale: float) -> float:
    scale = float(scale)
    if not (scale > 0 and math.isfinite(scale) and math.frexp(scale)[0] == 0.5):
        raise ValueError(f"{what}: scale={scale!r} must be a power of two (e.g. 0.25, 1, 2) so "
                         f"that PyTorch and the integer hardware agree bit for bit")
    return scale


SCALINGS = ("max", "mean")


def weight_scale(weight: Tensor, qmax: int, scaling: str = "max") -> Tensor:
    """The per-tensor power-of-two weight scale (no gradient).

    ``"max"``: ``2**ceil(log2(max|W| / qmax))``, so that no weight clips. ``"mean"``:
    ``2**round(log2(2 * mean|W| / qmax))``, for ternary weights (2-bit narrow: -1, 0, +1),
    where the largest weight would set a scale that rounds most others to 0; weights that
    reach past the top level clip there."""
    if scaling not in SCALINGS:
        raise ValueError(f"scaling={scaling!r} must be one of {SCALINGS}")
    w = weight.detach().abs()
    if scaling == "mean":
        return torch.exp2(torch.round(torch.log2((2 * w.mean()).clamp_min(2.0**-24) / qmax)))
    return torch.exp2(torch.ceil(torch.log2(w.amax().clamp_min(2.0**-24) / qmax)))


class _ActQuant(nn.Module):
    def __init__(self, bits: int, signed: bool, scale: float, narrow: bool = False):
        super().__init__()
        _check_args(bits, signed, narrow)
        self.bits, self.signed, self.narrow = bits, signed, narrow
        scale = _check_pow2(type(self).__name__, scale)
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
        self.register_buffer("zero_point", torch.tensor(0.0, dtype=torch.float32))

    def extra_repr(self) -> str:
        return (f"bits={self.bits}, signed={self.signed}, narrow={self.narrow}, "
                f"scale={float(self.scale)}")


class QuantIdentity(_ActQuant):
    """Quantizes its input to ``bits`` with a fixed power-of-two ``scale``.

    Parameters
    ----------
    bits : int
        Width of the integers.
    signed : bool
        Two's complement range ``[-2**(bits-1), 2**(bits-1)-1]`` or unsigned ``[0, 2**bits-1]``.
    scale : float
        A power of two: the value of one integer step.
    narrow : bool
        Drop the most negative (signed) or the largest (unsigned) level.
    """

    def __init__(self, bits: int = 8, signed: bool = True, scale: float = 1.0,
                 narrow: bool = False):
        super().__init__(bits, signed, scale, narrow)

    def forward(self, x: Tensor) -> Tensor:
        return quant(x, self.scale, self.zero_point, self.bits, self.signed, self.narrow)


class QuantReLU(_ActQuant):
    """ReLU followed by an unsigned ``bits``-wide quantizer with a power-of-two ``scale``:
    outputs ``scale * {0, 1, ..., 2**bits - 1}``."""

    def __init__(self, bits: int = 4, scale: float = 0.25):
        super().__init__(bits, False, scale, False)

    def forward(self, x: Tensor) -> Tensor:
        return quant(F.relu(x), self.scale, self.zero_point, self.bits, False, False)


class _QuantWeights:
    """``weight`` as ``weight_bits`` narrow signed integers times a per-tensor power-of-two
    scale (:func:`weight_scale`), for :class:`QuantLinear` and :class:`QuantConv2d`."""

    def _check_weight_quant(self, weight_bits: int, scaling: str):
        name = type(self).__name__
        if weight_bits < 2:
            raise ValueError(f"{name}: weight_bits={weight_bits!r} must be at least 2 "
                             f"(narrow signed weights)")
        if scaling not in SCALINGS:
            raise ValueError(f"{name}: scaling={scaling!r} must be one of {SCALINGS}")
        self.weight_bits, self.scaling = weight_bits, scaling

    def quant_weight(self) -> Tensor:
        """The dequantized weights (integers times the weight scale)."""
        qmax = int_range(self.weight_bits, True, True)[1]
        scale = weight_scale(self.weight, qmax, self.scaling)
        return quant(self.weight, scale, self.zero_point, self.weight_bits, True, True)


class _BinaryWeights:
    """``weight`` as ``scale * sign(W)`` (sign(0) = +1), for :class:`BinaryLinear` and
    :class:`BinaryConv2d`."""

    def _register_binary_scale(self, scale: float):
        self.register_buffer("scale", torch.tensor(_check_pow2(type(self).__name__, scale),
                                                   dtype=torch.float32))
        self.register_buffer("threshold", torch.tensor(0.0, dtype=torch.float32))

    def binary_weight(self) -> Tensor:
        """The weights as used: ``+scale`` or ``-scale``."""
        return bipolar(self.weight, self.scale, self.threshold)


class QuantLinear(_QuantWeights, nn.Module):
    """A linear layer with ``weight_bits``-wide narrow signed weights and a per-tensor
    power-of-two weight scale ``2**ceil(log2(max|W| / qmax))``.

    Its input must come from a hwgen quantizer (:class:`QuantIdentity`, :class:`QuantReLU`).

    Parameters
    ----------
    in_features, out_features : int
        Matrix shape.
    bias : bool
        Add a bias. Between a linear layer and a quantizer (e.g. before BatchNorm) a float bias
        is fine; on the last layer, whose output are the logits, pass ``input_scale`` too.
    weight_bits : int
        Width of the signed integer weights (narrow range ``[-(2**(b-1)-1), 2**(b-1)-1]``).
    input_scale : float or None
        Scale of the quantizer feeding this layer. With a bias, it quantizes the bias to the
        accumulator grid (scale ``input_scale * weight_scale``, 32-bit signed) so the outputs
        are integers times that scale: required on the last layer.
    scaling : str
        How the weight scale follows the weights (:func:`weight_scale`): ``"max"`` or
        ``"mean"`` (better for ternary weights).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False,
                 weight_bits: int = 4, input_scale: float | None = None,
                 scaling: str = "max"):
        super().__init__()
        self._check_weight_quant(weight_bits, scaling)
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.register_buffer("zero_point", torch.tensor(0.0, dtype=torch.float32))
        if input_scale is None:
            self.input_scale = None
        else:
            scale = _check_pow2("QuantLinear input_scale", input_scale)
            self.register_buffer("input_scale", torch.tensor(scale, dtype=torch.float32))

    def quant_bias(self) -> Tensor | None:
        """The bias: float, or on the accumulator grid with ``input_scale``."""
        if self.bias is None or self.input_scale is None:
            return self.bias
        qmax = int_range(self.weight_bits, True, True)[1]
        scale = self.input_scale * weight_scale(self.weight, qmax, self.scaling)
        return quant(self.bias, scale, self.zero_point, 32, True, False)

    def forward(self, x: Tensor) -> Tensor:
        # The bias is a separate add: BLAS may fuse a bias passed to F.linear and round
        # differently.
        y = F.linear(x, self.quant_weight())
        bias = self.quant_bias()
        if bias is not None:
            y = y + bias
        return y

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, weight_bits={self.weight_bits}")


class _Bipolar(nn.Module):
    def __init__(self, scale: float, threshold: float):
        super().__init__()
        scale = _check_pow2(type(self).__name__, scale)
        threshold = float(threshold)
        if not math.isfinite(threshold):
            raise ValueError(f"{type(self).__name__}: threshold={threshold!r} must be finite")
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
        self.register_buffer("threshold", torch.tensor(threshold, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return bipolar(x, self.scale, self.threshold)

    def extra_repr(self) -> str:
        return f"scale={float(self.scale)}, threshold={float(self.threshold)}"


class BinaryInput(_Bipolar):
    """Binarizes the raw input: ``+scale`` where ``x >= threshold``, ``-scale`` elsewhere.

    Use it first, like :class:`QuantIdentity`. A threshold inside the data's range matters: a
    plain sign of non-negative pixels would make every input +1. For 8-bit pixels,
    ``threshold=128`` maps ``pixel > 127`` to +1. The host computes these bits (the
    accelerator's input stream carries one bit per pixel, 1 meaning +1).
    """

    def __init__(self, threshold: float, scale: float = 1.0):
        super().__init__(scale, threshold)


class SignActivation(_Bipolar):
    """``+scale`` where ``x >= 0`` (so sign(0) = +1), ``-scale`` elsewhere; put a
    :class:`torch.nn.BatchNorm1d` before it to learn per-channel thresholds."""

    def __init__(self, scale: float = 1.0):
        super().__init__(scale, 0.0)


class BinaryLinear(_BinaryWeights, nn.Module):
    """A bias-free linear layer whose weights are ``scale * sign(W)`` (sign(0) = +1) of latent
    float weights ``W``, trained through the straight-through estimator.

    With binary inputs (from :class:`BinaryInput` or :class:`SignActivation`) hwgen builds it
    as XNOR-popcount hardware, one bit per weight. On the last layer its outputs are the
    integer logits ``acc * scale * input_scale``.

    Parameters
    ----------
    in_features, out_features : int
        Matrix shape.
    scale : float
        A power of two: the magnitude of every weight.
    """

    def __init__(self, in_features: int, out_features: int, scale: float = 1.0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.uniform_(self.weight, -1.0, 1.0)
        self._register_binary_scale(scale)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.binary_weight())

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"scale={float(self.scale)}")


def _pair(value, what: str, cls: str, least: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= least for v in pair):
        raise ValueError(f"{cls}: {what}={value!r} must be an integer or a pair of integers, "
                         f"each at least {least}")
    return pair


class _Conv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride, padding):
        super().__init__()
        name = type(self).__name__
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size", name, 1)
        self.stride = _pair(stride, "stride", name, 1)
        self.padding = _pair(padding, "padding", name, 0)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class QuantConv2d(_QuantWeights, _Conv2d):
    """A 2-D convolution with ``weight_bits``-wide narrow signed weights and a per-tensor
    power-of-two weight scale (as :class:`QuantLinear`).

    Its input must come from a hwgen quantizer. Zero padding pads with the integer 0 (zero
    points are 0), exactly what the hardware inserts.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts.
    kernel_size, stride, padding : int or (int, int)
        As in :class:`torch.nn.Conv2d` (no dilation or groups).
    bias : bool
        Add a bias per output channel (as a separate add, so that the float arithmetic is the
        one hwgen evaluates); fold it into thresholds with a quantizer after it.
    weight_bits : int
        Width of the signed integer weights (narrow range).
    scaling : str
        How the weight scale follows the weights (:func:`weight_scale`): ``"max"`` or
        ``"mean"`` (better for ternary weights).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = False, weight_bits: int = 4, scaling: str = "max"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding)
        self._check_weight_quant(weight_bits, scaling)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.register_buffer("zero_point", torch.tensor(0.0, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        y = F.conv2d(x, self.quant_weight(), stride=self.stride, padding=self.padding)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bias={self.bias is not None}, " \
               f"weight_bits={self.weight_bits}"


class BinaryConv2d(_BinaryWeights, _Conv2d):
    """A bias-free 2-D convolution whose weights are ``scale * sign(W)`` of latent float
    weights (sign(0) = +1), as :class:`BinaryLinear`.

    A binary stream carries one bit per element, +1 or -1, so it cannot carry PyTorch's zero
    padding: this layer pads with ``pad_value`` instead (``+input_scale`` by default, Larq's
    "one-padding"; ``-input_scale`` also works), and hwgen inserts the same bit in hardware.
    The padding is an explicit ``F.pad`` before the convolution.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts.
    kernel_size, stride, padding : int or (int, int)
        As in :class:`torch.nn.Conv2d` (no dilation or groups).
    scale : float
        A power of two: the magnitude of every weight.
    pad_value : float
        The value padding carries: ``+input_scale`` or ``-input_scale``, where ``input_scale``
        is the scale of the binarizer feeding this layer (1.0 for the default
        :class:`SignActivation` and :class:`BinaryInput`).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 scale: float = 1.0, pad_value: float = 1.0):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding)
        pad_value = float(pad_value)
        if pad_value == 0 or not math.isfinite(pad_value):
            raise ValueError(f"BinaryConv2d: pad_value={pad_value!r} must be +input_scale or "
                             f"-input_scale: a binary stream carries only +1 and -1, not 0")
        self.pad_value = pad_value
        self._register_binary_scale(scale)

    def forward(self, x: Tensor) -> Tensor:
        ph, pw = self.padding
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph), value=self.pad_value)
        return F.conv2d(x, self.binary_weight(), stride=self.stride)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={float(self.scale)}, pad_value={self.pad_value}"
