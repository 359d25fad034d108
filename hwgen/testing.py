"""Bit-exactness in your own tests.

::

    from hwgen.testing import assert_bit_exact

    def test_model_is_bit_exact():
        assert_bit_exact("model.pt", "test_inputs.npy")

:func:`assert_bit_exact` runs ``hwgen verify``: it compiles the model with the folding the
board's build would use, checks PyTorch against the golden model, and simulates the generated
Verilog in Verilator (back to back and under back-pressure) against the golden model. It fails
with hwgen's message, which on a mismatch names the first divergent layer, the frame and the
element, and the waveform it wrote.
"""

from __future__ import annotations

import tempfile
from os import PathLike
from pathlib import Path

import numpy as np

from hwgen.compiler.errors import VerificationError

__all__ = ["assert_bit_exact"]


def assert_bit_exact(model: str | PathLike, inputs: str | PathLike | np.ndarray | None = None,
                     *, board: str = "icebreaker", out: str | PathLike | None = None,
                     backpressure: bool = True, **options) -> dict:
    """Assert that the hardware hwgen generates for ``model`` equals the golden model (and
    the golden model equals PyTorch) on ``inputs``.

    Parameters
    ----------
    model : path
        A ``torch.export`` archive, as for ``hwgen build``.
    inputs : path of a .npy, array, or None
        The vectors (``[N, ...]``, as the model takes them); ``None`` verifies with the
        extreme and random vectors of ``hwgen build``.
    board : str
        The board whose folding to verify.
    out : path, optional
        Where the build folder goes (a new temporary folder by default; it is kept, so the
        report and any waveform can be inspected after a failure).
    backpressure : bool
        Also run under random back-pressure.
    options
        More :class:`hwgen.api.BuildOptions` fields (``fold``, ``output``, ``vectors``,
        ``seed``...).

    Returns the report (a dict) when every check passed. Raises :class:`AssertionError` with
    the failed checks and the first divergence when verification fails; errors in the model
    or its inputs raise hwgen's own exceptions.
    """
    from hwgen.api import BuildOptions, build

    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="hwgen-verify-"))
    out.mkdir(parents=True, exist_ok=True)
    if inputs is not None and not isinstance(inputs, (str, PathLike)):
        path = out / "inputs.npy"
        np.save(path, np.asarray(inputs))
        inputs = path
    settings = BuildOptions(board=board, out=out, inputs=inputs, bitstream=False,
                            backpressure=backpressure, **options)
    try:
        return build(model, settings)
    except VerificationError as exc:
        raise AssertionError(f"{model} is not bit-exact on {board}: {exc}") from None
