"""cocotb entry point for :mod:`hwgen.sim.verilator` (runs inside the simulator process).

It only drives the clock and reset and sequences the phases; the compiled harness
(``harness.sv``) streams the vectors and records the results. Phases come from the plusarg
``+hwgen_phases=<string of 0/1>``, one back-pressure flag per phase; the wall time of each phase
goes to ``<hwgen_out>.wall``.
"""

import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

RESET_CYCLES = 4


@cocotb.test()
async def hwgen_harness_phases(dut):
    Clock(dut.clk, 10, unit="ns").start()
    flags = str(cocotb.plusargs.get("hwgen_phases", "0"))
    walls = []
    for index, flag in enumerate(flags):
        t0 = time.perf_counter()
        dut.rst.value = 1
        dut.start.value = 0
        dut.phase.value = index
        dut.bp.value = int(flag)
        await ClockCycles(dut.clk, RESET_CYCLES)
        dut.rst.value = 0
        dut.start.value = 1
        await RisingEdge(dut.done)
        dut.start.value = 0
        walls.append(time.perf_counter() - t0)
        if int(dut.failed.value):
            break
    with open(f"{cocotb.plusargs['hwgen_out']}.wall", "w") as f:
        f.write("".join(f"{w:.6f}\n" for w in walls))
