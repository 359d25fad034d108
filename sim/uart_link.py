"""Full-system simulation: the board design driven through its serial pins in Verilator.

A cocotb testbench (:mod:`hwgen.sim._cocotb_uart`) plays the host: it sends planned bytes bit
by bit on ``rx`` and records every byte the design sends on ``tx``. What the bytes mean (the
host link protocol) is the caller's business: :mod:`hwgen.boards.system` encodes requests and
decodes replies with the same code ``hwgen run`` uses. The model is built once per design and
cached like :func:`hwgen.sim.verilator.build`'s.
"""

from __future__ import annotations

import bisect
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from hwgen.sim import primitives
from hwgen.sim.verilator import (
    SimulationError,
    _check_results,
    _tail,
    build_sources,
    run_cocotb,
)

__all__ = ["Chunk", "LinkRun", "decode_uart", "simulate_link"]

COCOTB_MODULE = "hwgen.sim._cocotb_uart"


@dataclass(frozen=True)
class Chunk:
    """Bytes the host sends back to back after ``gap_bits`` idle bit times; the bytes at the
    positions in ``bad_stop`` go out with a low stop bit (a UART framing error)."""

    data: bytes
    gap_bits: int = 0
    bad_stop: tuple[int, ...] = ()


@dataclass
class LinkRun:
    """What the host saw: ``received`` as ``(cycle, byte, stop bit)`` for every byte on
    ``tx``; the ``led`` and ``fault`` pins at the end; simulated ``cycles``; wall seconds."""

    received: list[tuple[int, int, int]]
    led: int
    fault: int
    cycles: int
    wall_s: float
    built: bool = False
    build_s: float = 0.0
    divisor: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def data(self) -> bytes:
        return bytes(byte for _, byte, _ in self.received)


def decode_uart(edges: list[int], divisor: int) -> list[tuple[int, int, int]]:
    """8N1 bytes ``(cycle of the start bit, byte, stop bit)`` on a line that idles high and
    changes at the cycles ``edges``, sampled in the middle of each bit as a UART would."""
    def level(t):
        return 1 - bisect.bisect_right(edges, t) % 2

    out = []
    k = 0
    while k < len(edges):
        start = edges[k]
        if level(start) != 0:  # a rising edge: not a start bit
            k += 1
            continue
        mid = start + divisor // 2
        if level(mid):
            k += 1  # a glitch
            continue
        byte = sum(level(mid + (i + 1) * divisor) << i for i in range(8))
        stop = level(mid + 9 * divisor)
        out.append((start, byte, stop))
        k = bisect.bisect_right(edges, mid + 9 * divisor)
    return out


def simulate_link(verilog: str, *, top: str, chunks: list[Chunk], divisor: int,
                  timeout_bits: int = 2000, cache_dir=None) -> LinkRun:
    """Send ``chunks`` into module ``top`` of ``verilog`` (ports ``clk``, ``rst``, ``rx``,
    ``tx``, ``led``, ``fault``) at ``divisor`` clock cycles per bit, and record ``tx`` until
    it has been silent for ``timeout_bits`` bit times after the last chunk."""
    model = build_sources({"dut.v": verilog + primitives.models(verilog)}, toplevel=top,
                          cache_dir=cache_dir)
    plan = {
        "divisor": int(divisor),
        "timeout_bits": int(timeout_bits),
        "chunks": [{"hex": c.data.hex(), "gap_bits": int(c.gap_bits),
                    "bad_stop": list(c.bad_stop)} for c in chunks],
    }
    with tempfile.TemporaryDirectory(prefix="hwgen-link-") as tmp:
        tmp = Path(tmp)
        (tmp / "plan.json").write_text(json.dumps(plan))
        t0 = time.perf_counter()
        log = run_cocotb(model, module=COCOTB_MODULE, toplevel=top, test_dir=tmp,
                         plusargs=[f"+hwgen_plan={tmp / 'plan.json'}",
                                   f"+hwgen_out={tmp / 'out.json'}"],
                         what=f"serial-link simulation of {top!r}")
        _check_results(tmp / "results.xml", log)
        try:
            out = json.loads((tmp / "out.json").read_text())
        except (OSError, ValueError):
            raise SimulationError(f"serial-link simulation of {top!r} wrote no results:\n"
                                  f"{_tail(log)}") from None
    return LinkRun(decode_uart(out["edges"], int(divisor)), out["led"], out["fault"], out["cycles"],
                   time.perf_counter() - t0, model.built, model.build_s, int(divisor))
