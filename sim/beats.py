"""Packing of element vectors into stream beats, and back.

A beat carries ``lanes`` elements of ``bits`` bits each, element 0 in the least significant bits
(see DESIGN.md, "Streams"). Negative elements are stored in two's complement; lanes past the end
of a vector (when ``lanes`` does not divide its length) are zero. A frame of a feature map is
``pixels`` vectors, each starting a new beat. Beats are Python ints, so a beat
may be wider than 64 bits.
"""

from __future__ import annotations

import numpy as np

__all__ = ["beat_count", "pack", "unpack"]


def _check(bits, lanes):
    if not isinstance(bits, (int, np.integer)) or bits < 1:
        raise ValueError(f"bits must be a positive integer, not {bits!r}")
    if not isinstance(lanes, (int, np.integer)) or lanes < 1:
        raise ValueError(f"lanes must be a positive integer, not {lanes!r}")


def beat_count(n: int, lanes: int) -> int:
    """Number of beats that carry ``n`` elements at ``lanes`` elements per beat."""
    return -(-n // lanes)


def _as_2d(values) -> np.ndarray:
    # Lists of Python ints beyond int64 would otherwise become float64 and lose bits.
    arr = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    if arr.dtype.kind == "f":
        raise TypeError(f"expected integers, not {arr.dtype} values")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"expected a [frames, n] array, not shape {arr.shape}")
    return arr


def _vectors(arr: np.ndarray, pixels: int) -> np.ndarray:
    """``[frames, n]`` as ``[frames * pixels, n // pixels]``: each vector packs on its own."""
    if not isinstance(pixels, (int, np.integer)) or pixels < 1 or arr.shape[1] % pixels:
        raise ValueError(f"pixels={pixels!r} must be a positive integer dividing the "
                         f"{arr.shape[1]} elements of a frame")
    return arr.reshape(arr.shape[0] * pixels, arr.shape[1] // pixels)


def pack(values, bits: int, lanes: int, pixels: int = 1) -> np.ndarray:
    """Pack ``values`` (``[frames, n]`` integers) into ``[frames, pixels * ceil(n / pixels /
    lanes)]`` beats: each of a frame's ``pixels`` vectors starts a new beat.

    Returns an object array of Python ints. Raises ``ValueError`` if a value does not fit in
    ``bits`` bits, neither as unsigned nor as two's complement.
    """
    _check(bits, lanes)
    arr = _as_2d(values)
    if pixels != 1:
        frames = arr.shape[0]
        return pack(_vectors(arr, pixels), bits, lanes).reshape(frames, -1)
    frames, n = arr.shape
    lo, hi = -(1 << (bits - 1)), (1 << bits) - 1
    mask = (1 << bits) - 1
    nbeats = beat_count(n, lanes)
    out = np.zeros((frames, nbeats), dtype=object)
    rows = arr.tolist()
    for f, row in enumerate(rows):
        for b in range(nbeats):
            word = 0
            for k, v in enumerate(row[b * lanes:(b + 1) * lanes]):
                v = int(v)
                if not lo <= v <= hi:
                    raise ValueError(
                        f"value {v} at frame {f}, element {b * lanes + k} does not fit in "
                        f"{bits} bits"
                    )
                word |= (v & mask) << (k * bits)
            out[f, b] = word
    return out


def unpack(beats, n: int, bits: int, lanes: int, signed: bool = False,
           pixels: int = 1) -> np.ndarray:
    """Unpack ``[frames, beats]`` packed ints into ``[frames, n]`` elements (in ``pixels``
    vectors, each starting a new beat).

    The result is ``int64`` when the elements fit, else an object array of Python ints.
    """
    _check(bits, lanes)
    arr = _as_2d(beats)
    if pixels != 1:
        frames = arr.shape[0]
        if n % pixels or arr.shape[1] % pixels:
            raise ValueError(f"pixels={pixels} must divide n={n} and the {arr.shape[1]} beats")
        return unpack(arr.reshape(frames * pixels, -1), n // pixels, bits, lanes,
                      signed).reshape(frames, n)
    frames, nbeats = arr.shape
    if nbeats < beat_count(n, lanes):
        raise ValueError(
            f"{nbeats} beats carry at most {nbeats * lanes} elements, fewer than n={n}"
        )
    mask = (1 << bits) - 1
    sign = 1 << (bits - 1)
    out = [[0] * n for _ in range(frames)]
    for f, row in enumerate(arr.tolist()):
        dst = out[f]
        for i in range(n):
            v = (int(row[i // lanes]) >> ((i % lanes) * bits)) & mask
            if signed and v & sign:
                v -= 1 << bits
            dst[i] = v
    fits = bits <= 63 or (signed and bits == 64)
    return np.array(out, dtype=np.int64 if fits else object).reshape(frames, n)
