"""pack/unpack: element 0 in the LSBs, two's complement, zero padding lanes, wide beats."""

import numpy as np
import pytest

from hwgen.sim.beats import beat_count, pack, unpack


def test_layout_lsb_first_and_padding():
    beats = pack([[1, 2, 3]], bits=4, lanes=2)
    assert beats.tolist() == [[0x21, 0x3]]
    assert beat_count(3, 2) == 2


def test_negative_twos_complement():
    beats = pack([[-1, -8, 7]], bits=4, lanes=3)
    assert beats.tolist() == [[0x78F]]
    assert unpack(beats, 3, bits=4, lanes=3, signed=True).tolist() == [[-1, -8, 7]]
    assert unpack(beats, 3, bits=4, lanes=3).tolist() == [[15, 8, 7]]


@pytest.mark.parametrize("bits,lanes,n,signed", [
    (1, 7, 20, False),
    (3, 5, 17, True),
    (4, 16, 64, True),
    (8, 3, 10, False),
    (9, 10, 25, True),   # 90-bit beats
    (32, 3, 7, True),    # 96-bit beats
    (64, 2, 5, False),   # 128-bit beats, elements beyond int64
])
def test_round_trip(bits, lanes, n, signed):
    rng = np.random.default_rng(bits * 100 + lanes)
    lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    values = [[int(x) for x in rng.integers(lo, hi, n, dtype=np.int64 if bits < 64 else
                                             np.uint64)] for _ in range(6)]
    beats = pack(values, bits, lanes)
    assert beats.shape == (6, beat_count(n, lanes))
    assert all(0 <= int(b) < (1 << (bits * lanes)) for b in beats.ravel())
    back = unpack(beats, n, bits, lanes, signed=signed)
    assert back.tolist() == values
    # Padding lanes of the final beat are zero.
    used = n - (beat_count(n, lanes) - 1) * lanes
    assert all(int(b) >> (used * bits) == 0 for b in beats[:, -1])


def test_uint64_beats_unpack():
    beats = pack([[5, -3]], bits=8, lanes=2).astype(np.uint64)
    assert unpack(beats, 2, bits=8, lanes=2, signed=True).tolist() == [[5, -3]]


def test_errors():
    with pytest.raises(ValueError, match="does not fit in 4 bits"):
        pack([[16]], bits=4, lanes=1)
    with pytest.raises(ValueError, match="does not fit in 4 bits"):
        pack([[-9]], bits=4, lanes=1)
    with pytest.raises(ValueError, match="bits must be"):
        pack([[1]], bits=0, lanes=1)
    with pytest.raises(ValueError, match="fewer than n=5"):
        unpack([[0]], 5, bits=4, lanes=4)
