"""The full-system UART simulation must be able to fail: a corrupted weight in the built
design gives wrong replies that the check counts."""

from pathlib import Path

import numpy as np
import pytest

from hwgen import compiler
from hwgen.boards.catalogue import get_board
from hwgen.boards.system import check_link
from hwgen.compiler.fold import Budget, lower
from hwgen.sim import golden
from hwgen.sim.faults import inject
from hwgen.sim.uart_link import decode_uart

ROOT = Path(__file__).resolve().parents[2]


def test_decode_uart_from_edges():
    # 0x53 = 0b01010011 at 4 cycles per bit, starting at cycle 10: start bit low, then data
    # bits LSB first 1,1,0,0,1,0,1,0, then the stop bit.
    levels = [0, 1, 1, 0, 0, 1, 0, 1, 0, 1]
    edges, level = [], 1
    for k, bit in enumerate(levels):
        if bit != level:
            edges.append(10 + 4 * k)
            level = bit
    assert decode_uart(edges, 4) == [(10, 0x53, 1)]


@pytest.mark.slow
def test_corrupted_weight_gives_wrong_replies():
    graph = lower(compiler.compile_model(ROOT / "examples" / "digits_mlp_w4a4.pt"),
                  Budget.from_totals(get_board("icebreaker").totals))
    x = np.load(ROOT / "examples" / "digits_test_x.npy")[:30]
    codes = golden.input_quant(graph.input, x)
    layers = golden.run_layers(graph, codes)
    expected = golden.run(graph, codes)
    broken, what = inject(graph, "weight", codes, layers)
    result = check_link(broken, codes, expected, divisor=8, clock_hz=12e6,
                        bad_requests=False)
    assert result["mismatches"] > 0, what
    assert any("outputs" in p for p in result["problems"])
