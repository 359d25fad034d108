"""Errors a user can act on.

Each message is one paragraph: what is wrong, where (file, op, node, layer, resource), and what
to do. The CLI prints the message and exits non-zero; no traceback is needed to understand it.
"""

__all__ = [
    "FitError",
    "HwgenError",
    "ModelFileError",
    "QuantizationError",
    "UnsupportedOpError",
    "VerificationError",
]


class HwgenError(Exception):
    """Base class of every error hwgen reports to its user."""

    #: Exit code of the CLI for this kind of error.
    exit_code = 2


class ModelFileError(HwgenError):
    """The file is missing, is not a model, or is a kind hwgen refuses (e.g. a pickle)."""


class UnsupportedOpError(HwgenError):
    """The model uses an operation hwgen cannot map to hardware."""


class QuantizationError(HwgenError):
    """The model's quantization cannot be turned into integer hardware (a float layer with no
    quantizer, a non-zero zero point, a non-monotonic activation...)."""


class FitError(HwgenError):
    """The design does not fit the board: names the resource, the overflow and the layers."""


class VerificationError(HwgenError):
    """The generated hardware disagrees with the golden model."""

    exit_code = 1
