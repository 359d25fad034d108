"""SPRAM: the behavioural model in Amaranth's simulator, the primitive instances in Verilog,
and Yosys's simulation model of SB_SPRAM256KA in Verilator (through an MVAU whose input
buffer lives in SPRAM)."""

import zlib

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator
from hwsim import make_mvau
from test_hw_mvau import check

from hwgen.hw.spram import PRIMITIVES, SPRAM
from hwgen.sim import primitives


def test_behavioural_read_write_hold():
    dut = SPRAM(20, 64)
    seen = []

    async def bench(ctx):
        for a in range(8):  # write
            ctx.set(dut.addr, a)
            ctx.set(dut.wdata, 0xABCDE ^ (a * 0x1111))
            ctx.set(dut.we, 1)
            await ctx.tick()
        ctx.set(dut.we, 0)
        for a in (3, 7, 0):  # read, one cycle latency
            ctx.set(dut.addr, a)
            ctx.set(dut.re, 1)
            await ctx.tick()
            seen.append(ctx.get(dut.rdata))
        ctx.set(dut.re, 0)
        ctx.set(dut.addr, 5)
        await ctx.tick()
        seen.append(ctx.get(dut.rdata))  # held: re low

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [0xABCDE ^ 0x3333, 0xABCDE ^ 0x7777, 0xABCDE, 0xABCDE]


def test_primitive_instances_and_models():
    text = rtlil.convert(SPRAM(40, 100), platform=PRIMITIVES)
    assert text.count("SB_SPRAM256KA") == 3  # ceil(40 / 16) blocks side by side
    model = primitives.models("  SB_SPRAM256KA block0 (\n")
    assert model.count("module SB_SPRAM256KA") == 1 and "endmodule" in model
    assert primitives.models("module top; endmodule") == ""


@pytest.mark.parametrize(("width", "depth"), [(0, 4), (16, 0), (16, 20000)])
def test_rejects_bad_shapes(width, depth):
    with pytest.raises(ValueError, match="SPRAM"):
        SPRAM(width, depth)


@pytest.mark.parametrize("case", ["xnor", "mac"])
def test_mvau_with_spram_input_buffer(case):
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    kw = {"in_bipolar": True, "weight_bipolar": True} if case == "xnor" else {"in_bits": 3}
    layer = make_mvau(rng, 9, 22, pe=3, simd=5, out_bits=1, **kw)
    layer.styles = {"input_buffer": "spram"}
    check(layer, frames=4, p_gap=0.3, p_stall=0.4, seed=2)
