"""cocotb entry point for :mod:`hwgen.sim.uart_link` (runs inside the simulator process).

Plays a host on the design's serial pins: sends the planned bytes bit by bit on ``rx`` (8N1,
optionally with a low stop bit to cause a framing error) and records the cycle of every
change of ``tx``, from which :mod:`hwgen.sim.uart_link` decodes the bytes. Time advances by
runs of equal bits (``Timer``), not by clock edges, so the cost is per line change and the
same at any bit period.
"""

import json

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Edge, Timer
from cocotb.utils import get_sim_time

PERIOD_NS = 10


@cocotb.test()
async def hwgen_uart_link(dut):
    with open(cocotb.plusargs["hwgen_plan"]) as f:
        plan = json.load(f)
    bit_ns = plan["divisor"] * PERIOD_NS
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await Timer(PERIOD_NS * 20 + 2, "ns")  # off the clock edges

    edges = []  # cycles at which tx changed; the parent decodes the bytes from them

    async def listen():
        while True:
            await Edge(dut.tx)
            edges.append(int(get_sim_time("ns") // PERIOD_NS))

    cocotb.start_soon(listen())
    for chunk in plan["chunks"]:
        if chunk["gap_bits"]:
            await Timer(chunk["gap_bits"] * bit_ns, "ns")
        bad_stops = set(chunk["bad_stop"])
        bits = []
        for k, byte in enumerate(bytes.fromhex(chunk["hex"])):
            bits += [0, *((byte >> i) & 1 for i in range(8))]
            # A low stop bit makes a framing error; the line then idles for a bit.
            bits += [0, 1] if k in bad_stops else [1]
        # One wait per run of equal bits: the cost is per line change, not per bit.
        run = 0
        for k, bit in enumerate(bits):
            run += 1
            if k + 1 == len(bits) or bits[k + 1] != bit:
                dut.rx.value = bit
                await Timer(run * bit_ns, "ns")
                run = 0

    # Wait while replies keep coming (no line change for timeout_bits means done), then a
    # quiet spell in which any extra byte would show.
    while True:
        before = len(edges)
        await Timer(plan["timeout_bits"] * bit_ns, "ns")
        if len(edges) == before:
            break
    with open(cocotb.plusargs["hwgen_out"], "w") as f:
        json.dump({"edges": edges, "led": int(dut.led.value),
                   "fault": int(dut.fault.value),
                   "cycles": int(get_sim_time("ns") // PERIOD_NS)}, f)
