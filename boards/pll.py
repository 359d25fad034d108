"""PLLs for iCE40 and ECP5 boards: a ``sync`` clock at a frequency the placed design meets.

Two parts:

* Pure functions that choose PLL parameters the way the icepll (iCE40) and ecppll (ECP5) tools
  do, except that the output is the highest achievable frequency **not above** the target (the
  design must meet it; the tools pick the nearest, which may be above):
  :func:`ice40_pll_config`, :func:`ecp5_pll_config`, :func:`pll_config` (by family),
  :func:`pll_output_range` and :func:`pll_helps` (whether a PLL beats the board's oscillator).
* :class:`PLLDomain`, which instantiates the PLL on an amaranth-boards platform, drives the
  ``sync`` domain from its output (held in reset until LOCK, plus the iCE40 power-on delay) and
  registers the output frequency with the platform, so nextpnr checks timing at it.

Typical use, after a first place and route at the oscillator clock reported ``fmax_hz``::

    if pll_helps(board.family, board.clock_hz, fmax_hz):
        pll = PLLDomain.for_board(board, fmax_hz)
        clock_hz = pll.frequency_hz          # for baud divisors, fps, reports
        # in the top's elaborate():
        m.domains.sync = ClockDomain()       # the top defines sync, the PLL drives it
        m.submodules.pll = pll

Sources followed
----------------
* iCE40: icestorm ``icepll/icepll.cc`` (``analyze()``, SIMPLE feedback): limits in 10-133 MHz,
  PFD 10-133 MHz, VCO 533-1066 MHz, out 16-275 MHz; DIVR 0-15, DIVF 0-127, DIVQ 1-6; loop order
  and first-found tie-break; FILTER_RANGE from the PFD frequency. Lattice FPGA-TN-02052 (iCE40
  sysCLOCK PLL guide) for SB_PLL40_PAD: a clock on the PLL's own pad can only feed the PLL.
  nextpnr ``ice40/pack.cc`` (``place_plls``) enforces that, so such pins need the PAD primitive.
* ECP5: prjtrellis ``libtrellis/tools/ecppll.cpp`` (``calc_pll_params``, ``write_pll_config``):
  CLKI_DIV 1-128, CLKFB_DIV 1-80, CLKOP_DIV 1-128, PFD >= 3.125 MHz, VCO 400-800 MHz, ties
  broken by the VCO nearest 600 MHz, CLKOP_CPHASE and the EHXPLLL parameters and attributes it
  emits. Output 3.125-400 MHz and input 8-400 MHz from the ECP5 data sheet (FPGA-DS-02012,
  sysCLOCK PLL timing), as LiteX's ``ECP5PLL`` uses them.

Frequencies are compared exactly (fractions). Among ECP5 dividers that give the same output,
ecppll's float arithmetic is replayed, since it decides between them. Whenever the tool's
nearest frequency is not above the target, the settings equal the tool's: checked against
yowasp-icepll and yowasp-ecppll for about 450 targets and inputs of 8-133 MHz.
"""

import math
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

from amaranth.hdl import ClockDomain, ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import Out
from amaranth.vendor import LatticePlatform, SiliconBluePlatform

from ..compiler.errors import HwgenError
from .catalogue import Board, get_board

__all__ = [
    "ECP5PLLConfig",
    "ICE40PLLConfig",
    "PLLDomain",
    "PLLError",
    "ecp5_pll_config",
    "ice40_pll_config",
    "pll_config",
    "pll_helps",
    "pll_output_range",
]

_MHZ = 1_000_000


class PLLError(HwgenError, ValueError):
    """No PLL setting gives a usable clock (target below the PLL's range, input clock outside
    the PLL's input range), or the PLL does not match the platform it is elaborated on."""


def _hz(value, name: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive frequency in Hz, not {value!r}")
    return Fraction(value)


def _mhz(hz) -> str:
    return f"{float(hz) / _MHZ:.6g} MHz"


def _describe(source: str | None, f_in: Fraction) -> str:
    return source or f"the {_mhz(f_in)} input clock"


def _check_input(family: str, f_in: Fraction, limits: tuple, source: str | None) -> None:
    lo, hi = limits
    if not lo <= f_in / _MHZ <= hi:
        raise PLLError(f"The {family} PLL cannot use {_describe(source, f_in)}: its input must be "
                       f"{float(lo):g}-{float(hi):g} MHz. Keep the board's oscillator clock.")


# --- iCE40 (SB_PLL40_*), after icepll.cc ---------------------------------------------------

_ICE40_IN  = (10, 133)
_ICE40_PFD = (10, 133)
_ICE40_VCO = (533, 1066)
_ICE40_OUT = (16, 275)


@dataclass(frozen=True)
class ICE40PLLConfig:
    """Settings of an iCE40 SB_PLL40_CORE/SB_PLL40_PAD in SIMPLE feedback mode.

    ``f_out = f_in * (DIVF + 1) / (DIVR + 1) / 2**DIVQ``.

    Members
    -------
    f_in_hz : float
        Reference clock.
    f_out_hz : float
        Output clock (PLLOUTGLOBAL).
    divr : int
        Reference divider, 0-15 (divides by ``divr + 1``).
    divf : int
        Feedback divider, 0-127 (multiplies by ``divf + 1``).
    divq : int
        VCO divider exponent, 1-6 (divides by ``2**divq``).
    filter_range : int
        Loop filter setting for the PFD frequency, 1-6.
    """

    family: ClassVar[str] = "ice40"

    f_in_hz: float
    f_out_hz: float
    divr: int
    divf: int
    divq: int
    filter_range: int

    @property
    def f_pfd_hz(self) -> float:
        """Phase detector frequency, ``f_in / (DIVR + 1)``."""
        return self.f_in_hz / (self.divr + 1)

    @property
    def f_vco_hz(self) -> float:
        """VCO frequency, ``f_pfd * (DIVF + 1)``."""
        return self.f_pfd_hz * (self.divf + 1)

    def parameters(self) -> dict:
        """``Instance`` parameters (``p_`` names without the prefix), widths as icepll writes."""
        return {
            "FEEDBACK_PATH": "SIMPLE",
            "PLLOUT_SELECT": "GENCLK",
            "DIVR":          Const(self.divr, 4),
            "DIVF":          Const(self.divf, 7),
            "DIVQ":          Const(self.divq, 3),
            "FILTER_RANGE":  Const(self.filter_range, 3),
        }


def _ice40_filter_range(f_pfd_mhz) -> int:
    # Thresholds as icepll computes them (also LiteX's iCE40PLL).
    for limit, value in ((17, 1), (26, 2), (44, 3), (66, 4), (101, 5)):
        if f_pfd_mhz < limit:
            return value
    return 6


def _ice40_candidates(f_in: Fraction):
    """(f_out, divr, divf, divq) in icepll's loop order, all within the limits."""
    for divr in range(16):
        f_pfd = f_in / (divr + 1) / _MHZ
        if not _ICE40_PFD[0] <= f_pfd <= _ICE40_PFD[1]:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not _ICE40_VCO[0] <= f_vco <= _ICE40_VCO[1]:
                continue
            for divq in range(1, 7):
                f_out = f_vco / 2**divq
                # icepll checks only the requested output against 16-275 MHz and can pick
                # one below 16 MHz (533 MHz / 64); the data sheet limits the output itself.
                if _ICE40_OUT[0] <= f_out <= _ICE40_OUT[1]:
                    yield f_out * _MHZ, divr, divf, divq


def ice40_pll_config(f_in_hz: float, target_hz: float, *,
                     source: str | None = None) -> ICE40PLLConfig:
    """The iCE40 PLL setting with the highest output not above ``target_hz``.

    Parameters
    ----------
    f_in_hz : float
        Reference clock (the board's oscillator), 10-133 MHz.
    target_hz : float
        Highest acceptable output, e.g. the fmax of a first place and route.
    source : str, optional
        The reference clock, for messages ("the iCEBreaker's 12 MHz clock clk12").

    Returns
    -------
    ICE40PLLConfig
        Equal to icepll's choice whenever icepll's nearest frequency is not above the target
        (nor below the data sheet's 16 MHz, which icepll does not check).

    Raises
    ------
    PLLError
        ``f_in_hz`` is outside the PLL's input range, or ``target_hz`` is below its lowest
        output (keep the oscillator clock then; see :func:`pll_helps`).
    """
    f_in = _hz(f_in_hz, "f_in_hz")
    target = _hz(target_hz, "target_hz")
    _check_input("iCE40", f_in, _ICE40_IN, source)
    best = None
    for candidate in _ice40_candidates(f_in):
        # Strictly higher only: the first found wins ties, as in icepll.
        if candidate[0] <= target and (best is None or candidate[0] > best[0]):
            best = candidate
    if best is None:
        _raise_below("iCE40", f_in, target, _range(_ice40_candidates(f_in)), source)
    f_out, divr, divf, divq = best
    return ICE40PLLConfig(f_in_hz=float(f_in), f_out_hz=float(f_out), divr=divr, divf=divf,
                          divq=divq, filter_range=_ice40_filter_range(f_in / (divr + 1) / _MHZ))


# --- ECP5 (EHXPLLL), after ecppll.cpp ------------------------------------------------------

_ECP5_IN  = (8, 400)
_ECP5_PFD = (Fraction(3125, 1000), 400)
_ECP5_VCO = (400, 800)
_ECP5_OUT = (Fraction(3125, 1000), 400)
_ECP5_VCO_AIM = 600


@dataclass(frozen=True)
class ECP5PLLConfig:
    """Settings of an ECP5 EHXPLLL with CLKOP fed back (``FEEDBK_PATH = "CLKOP"``).

    ``f_out = f_in / CLKI_DIV * CLKFB_DIV``; ``f_vco = f_out * CLKOP_DIV``.

    Members
    -------
    f_in_hz : float
        Reference clock (CLKI).
    f_out_hz : float
        Output clock (CLKOP).
    clki_div : int
        Reference divider, 1-128.
    clkfb_div : int
        Feedback divider, 1-80.
    clkop_div : int
        VCO to CLKOP divider, 1-128.
    clkop_cphase : int
        CLKOP coarse phase, in VCO cycles, as ecppll sets it (about half of ``clkop_div``).
    """

    family: ClassVar[str] = "ecp5"

    f_in_hz: float
    f_out_hz: float
    clki_div: int
    clkfb_div: int
    clkop_div: int
    clkop_cphase: int

    @property
    def f_pfd_hz(self) -> float:
        """Phase detector frequency, ``f_in / CLKI_DIV``."""
        return self.f_in_hz / self.clki_div

    @property
    def f_vco_hz(self) -> float:
        """VCO frequency, ``f_out * CLKOP_DIV``."""
        return self.f_out_hz * self.clkop_div

    def parameters(self) -> dict:
        """``Instance`` parameters (``p_`` names without the prefix), as ecppll writes them."""
        return {
            "PLLRST_ENA":      "DISABLED",
            "INTFB_WAKE":      "DISABLED",
            "STDBY_ENABLE":    "DISABLED",
            "DPHASE_SOURCE":   "DISABLED",
            "OUTDIVIDER_MUXA": "DIVA",
            "OUTDIVIDER_MUXB": "DIVB",
            "OUTDIVIDER_MUXC": "DIVC",
            "OUTDIVIDER_MUXD": "DIVD",
            "CLKI_DIV":        self.clki_div,
            "CLKOP_ENABLE":    "ENABLED",
            "CLKOP_DIV":       self.clkop_div,
            "CLKOP_CPHASE":    self.clkop_cphase,
            "CLKOP_FPHASE":    0,
            "FEEDBK_PATH":     "CLKOP",
            "CLKFB_DIV":       self.clkfb_div,
        }

    def attributes(self) -> dict:
        """``Instance`` attributes (``a_`` names without the prefix), as ecppll writes them."""
        return {
            "FREQUENCY_PIN_CLKI":     f"{self.f_in_hz / _MHZ:g}",
            "FREQUENCY_PIN_CLKOP":    f"{self.f_out_hz / _MHZ:g}",
            "ICP_CURRENT":            "12",
            "LPF_RESISTOR":           "8",
            "MFG_ENABLE_FILTEROPAMP": "1",
            "MFG_GMCREF_SEL":         "2",
        }


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def _ecp5_cphase(f_in_mhz: float, clki_div: int, clkfb_div: int, clkop_div: int) -> int:
    """CLKOP_CPHASE exactly as ecppll computes it: half an output period in VCO cycles, in its
    mix of float and double arithmetic, truncated (so 12 gives 5, not 6)."""
    f_pfd = _f32(_f32(f_in_mhz) / clki_div)
    f_vco = _f32(_f32(f_pfd * clkfb_div) * clkop_div)
    f_out = _f32(f_vco / clkop_div)
    ns_phase = _f32(1 / (f_out * 1e6) * 0.5)
    return int(ns_phase * (f_vco * 1e6))


def _ecp5_candidates(f_in: Fraction):
    """(f_out, clki_div, clkfb_div, lowest, highest clkop_div) in ecppll's loop order, for each
    divider pair with some CLKOP_DIV in the VCO range."""
    for clki_div in range(1, 129):
        f_pfd = f_in / clki_div / _MHZ
        if not _ECP5_PFD[0] <= f_pfd <= _ECP5_PFD[1]:
            continue
        for clkfb_div in range(1, 81):
            f_out = f_pfd * clkfb_div
            if not _ECP5_OUT[0] <= f_out <= _ECP5_OUT[1]:
                continue
            low = max(1, math.ceil(_ECP5_VCO[0] / f_out))
            high = min(128, math.floor(_ECP5_VCO[1] / f_out))
            if low <= high:
                yield f_out * _MHZ, clki_div, clkfb_div, low, high


def _ecp5_pick(f_in_mhz: float, target_mhz: float, settings) -> tuple[int, int, int]:
    """ecppll's choice among ``settings`` (clki_div, clkfb_div, clkop_div), all with the same
    exact output: the smallest error in its float arithmetic (which differs between output
    dividers by rounding), then the VCO nearest 600 MHz, then the first."""
    best, best_error, best_miss = None, math.inf, math.inf
    target = _f32(target_mhz)
    for clki_div, clkfb_div, clkop_div in settings:
        f_pfd = _f32(_f32(f_in_mhz) / clki_div)
        f_vco = _f32(_f32(f_pfd * clkfb_div) * clkop_div)
        error = abs(_f32(_f32(f_vco / clkop_div) - target))
        miss = abs(_f32(f_vco - _ECP5_VCO_AIM))
        if error < best_error or (error == best_error and miss < best_miss):
            best, best_error, best_miss = (clki_div, clkfb_div, clkop_div), error, miss
    return best


def ecp5_pll_config(f_in_hz: float, target_hz: float, *,
                    source: str | None = None) -> ECP5PLLConfig:
    """The ECP5 PLL setting with the highest CLKOP not above ``target_hz``.

    Among the dividers giving that output, the one ecppll would pick (its float error, then
    the VCO nearest 600 MHz, then the first in its loop order).

    Parameters
    ----------
    f_in_hz : float
        Reference clock (the board's oscillator), 8-400 MHz.
    target_hz : float
        Highest acceptable output, e.g. the fmax of a first place and route.
    source : str, optional
        The reference clock, for messages.

    Returns
    -------
    ECP5PLLConfig
        Equal to ecppll's choice whenever ecppll's nearest frequency is not above the target.

    Raises
    ------
    PLLError
        ``f_in_hz`` is outside the PLL's input range, or ``target_hz`` is below its lowest
        output (keep the oscillator clock then; see :func:`pll_helps`).
    """
    f_in = _hz(f_in_hz, "f_in_hz")
    target = _hz(target_hz, "target_hz")
    _check_input("ECP5", f_in, _ECP5_IN, source)
    candidates = list(_ecp5_candidates(f_in))
    f_out = max((c[0] for c in candidates if c[0] <= target), default=None)
    if f_out is None:
        _raise_below("ECP5", f_in, target, _range(candidates), source)
    settings = [(clki_div, clkfb_div, clkop_div)
                for f, clki_div, clkfb_div, low, high in candidates if f == f_out
                for clkop_div in range(low, high + 1)]
    f_in_mhz = float(f_in) / _MHZ
    clki_div, clkfb_div, clkop_div = _ecp5_pick(f_in_mhz, float(target) / _MHZ, settings)
    return ECP5PLLConfig(f_in_hz=float(f_in), f_out_hz=float(f_out), clki_div=clki_div,
                         clkfb_div=clkfb_div, clkop_div=clkop_div,
                         clkop_cphase=_ecp5_cphase(f_in_mhz, clki_div, clkfb_div, clkop_div))


# --- by family -------------------------------------------------------------------------------

_FAMILIES = {
    "ice40": ("iCE40", ice40_pll_config, _ice40_candidates, _ICE40_IN),
    "ecp5":  ("ECP5", ecp5_pll_config, _ecp5_candidates, _ECP5_IN),
}


def _family(family: str):
    if family not in _FAMILIES:
        raise PLLError(f"No PLL support for the {family!r} family; hwgen has PLLs for "
                       f"{', '.join(sorted(_FAMILIES))}. Keep the board's oscillator clock.")
    return _FAMILIES[family]


def _range(candidates) -> tuple[Fraction, Fraction]:
    outputs = [candidate[0] for candidate in candidates]
    return min(outputs), max(outputs)


def _raise_below(name: str, f_in: Fraction, target: Fraction, span, source: str | None):
    low, high = span
    raise PLLError(f"The {name} PLL cannot make a clock at or below {_mhz(target)} from "
                   f"{_describe(source, f_in)}: it reaches {_mhz(low)} to {_mhz(high)}. Keep the "
                   f"oscillator clock (pll_helps() says when a PLL is worth it).")


def pll_config(family: str, f_in_hz: float, target_hz: float, *, source: str | None = None):
    """:func:`ice40_pll_config` or :func:`ecp5_pll_config` by ``family`` (``"ice40"``,
    ``"ecp5"``).

    Raises
    ------
    PLLError
        Unknown family, or as the family's function.
    """
    return _family(family)[1](f_in_hz, target_hz, source=source)


def pll_output_range(family: str, f_in_hz: float) -> tuple[float, float]:
    """Lowest and highest output (Hz) the family's PLL makes from ``f_in_hz``.

    Raises
    ------
    PLLError
        Unknown family, or ``f_in_hz`` outside the PLL's input range.
    """
    name, _, candidates, limits = _family(family)
    f_in = _hz(f_in_hz, "f_in_hz")
    _check_input(name, f_in, limits, None)
    low, high = _range(candidates(f_in))
    return float(low), float(high)


def pll_helps(family: str, f_in_hz: float, target_hz: float) -> bool:
    """Whether a PLL gives a clock faster than the oscillator ``f_in_hz`` and not above
    ``target_hz``. False when the target is below the PLL's range or the family or input
    clock cannot use a PLL: then keep the oscillator clock."""
    try:
        config = pll_config(family, f_in_hz, target_hz)
    except PLLError:
        return False
    return config.f_out_hz > f_in_hz


# --- the clock domain ------------------------------------------------------------------------

# iCE40 pins that are a PLL's own pad: a clock there can only reach the PLL (SB_PLL40_PAD),
# nextpnr refuses a SB_PLL40_CORE while the pad is used as an input. Checked by builds.
_ICE40_PLL_PADS = {
    ("iCE40UP5K", "SG48"): {"35"},
}

# Power-on reset after LOCK, as Amaranth's iCE40 platform holds it after configuration: EBRs
# read as zero for ~3 us, internal oscillators need 100 us to settle.
_ICE40_POR_S = 15e-6
_ICE40_POR_OSC_S = 100e-6


def _platform_family(platform) -> str:
    if isinstance(platform, SiliconBluePlatform):
        return "ice40"
    if isinstance(platform, LatticePlatform) and platform.family == "ecp5":
        return "ecp5"
    raise PLLError(f"PLLDomain supports iCE40 and ECP5 platforms, not "
                   f"{type(platform).__qualname__}.")


class PLLDomain(wiring.Component):
    """Drive clock domain ``domain`` (default ``sync``) from the FPGA's PLL, fed by the board's
    default clock, in place of the platform's own ``sync`` domain.

    The caller defines the domain in the top and adds this as a submodule::

        m.domains.sync = ClockDomain()      # not reset-less: this drives its reset
        m.submodules.pll = PLLDomain.for_board(board, fmax_hz)

    (Amaranth 0.5 deprecates a domain defined in a submodule and used by its parent.) Without
    the definition, elaboration raises :class:`PLLError`.

    The domain is held in reset until the PLL reports LOCK and, on iCE40, for the platform's
    power-on delay after it (15 us; 100 us from SB_HFOSC), as Amaranth's own iCE40 ``sync``
    domain is after configuration (block RAMs read as zero for ~3 us). The output frequency is
    registered with ``platform.add_clock_constraint``, so nextpnr times the design at it and
    reports its fmax. iCE40 uses SB_PLL40_PAD when the clock pin is the PLL's own pad
    (iCEBreaker: pin 35), else SB_PLL40_CORE (other pins, SB_HFOSC); ECP5 uses EHXPLLL with
    CLKOP feedback.

    Parameters
    ----------
    config : ICE40PLLConfig or ECP5PLLConfig
        From :func:`pll_config`; its input must be the platform's default clock frequency.
    domain : str
        Name of the clock domain driven.

    Members
    -------
    locked : Out(1)
        The PLL's LOCK output (asynchronous to every domain).
    """

    def __init__(self, config, *, domain: str = "sync"):
        if not isinstance(config, (ICE40PLLConfig, ECP5PLLConfig)):
            self._MustUse__silence = True  # never built, so never elaborated
            raise TypeError(f"config must be an ICE40PLLConfig or ECP5PLLConfig (from "
                            f"pll_config()), not {config!r}")
        self.config = config
        self.domain = domain
        super().__init__({"locked": Out(1)})

    @classmethod
    def for_board(cls, board: str | Board, target_hz: float, *, domain: str = "sync"):
        """A PLL domain for a catalogue board, at the highest frequency not above
        ``target_hz`` (see :func:`pll_config`; raises :class:`PLLError` the same way)."""
        board = get_board(board)
        source = f"the {board.title}'s {board.clock_mhz:g} MHz clock"
        return cls(pll_config(board.family, board.clock_hz, target_hz, source=source),
                   domain=domain)

    @property
    def frequency_hz(self) -> float:
        """The domain's clock frequency."""
        return self.config.f_out_hz

    def elaborate(self, platform):
        if platform is None:
            raise PLLError("PLLDomain instantiates the FPGA's PLL and needs a board platform: "
                           "elaborate it through platform.build() or prepare(). Simulations "
                           "drive the sync domain from the testbench (sim.add_clock) and leave "
                           "the PLLDomain out.")
        family = _platform_family(platform)
        self._check_platform(platform, family)
        self._refuse_platform_domain(platform)
        m = Module()
        # keep: Yosys would drop this alias of the top's clock net, and nextpnr would not find
        # the name the clock constraint uses.
        clk = Signal(name="pll_clk", attrs={"keep": 1})
        lock = Signal(name="pll_lock")
        if family == "ice40":
            por_s = self._ice40_pll(m, platform, clk, lock)
        else:
            self._ecp5_pll(m, platform, clk, lock)
            por_s = 0
        m.d.comb += self.locked.eq(lock)
        rst = Const(0)
        if platform.default_rst is not None:
            m.submodules.rst_buf = rst_buf = io.Buffer(
                "i", platform.request(platform.default_rst, dir="-"))
            rst = rst_buf.i
        _drive_domain(m, self.domain, clk, lock, rst, round(por_s * self.config.f_out_hz))
        platform.add_clock_constraint(clk, self.config.f_out_hz)
        return m

    def _check_platform(self, platform, family: str) -> None:
        name = type(platform).__qualname__
        if family != self.config.family:
            raise PLLError(f"This PLL is set up for the {self.config.family} family, but {name} "
                           f"is {family}: choose it with pll_config({family!r}, ...).")
        if platform.default_clk is None:
            raise PLLError(f"{name} has no default clock to feed the PLL.")
        f_in = platform.default_clk_frequency
        if f_in != self.config.f_in_hz:
            raise PLLError(f"This PLL is set up for a {_mhz(self.config.f_in_hz)} input, but the "
                           f"default clock {platform.default_clk!r} of {name} runs at "
                           f"{_mhz(f_in)}: choose it with pll_config({family!r}, {f_in:g}, ...).")

    def _refuse_platform_domain(self, platform) -> None:
        """Make a missing domain definition an error that says what to do: otherwise the
        platform creates the domain itself and fails on requesting its clock pin twice."""
        create = platform.create_missing_domain
        domain = self.domain

        def create_missing_domain(name):
            if name == domain:
                raise PLLError(f"PLLDomain drives the {domain!r} clock domain but no module "
                               f"defines it: add m.domains.{domain} = ClockDomain() to the "
                               f"module that adds the PLLDomain (or a parent of it).")
            return create(name)

        platform.create_missing_domain = create_missing_domain

    def _ice40_pll(self, m, platform, clk, lock) -> float:
        """Instantiate the iCE40 PLL; return the power-on delay in seconds."""
        ports = {"i_RESETB": 1, "i_BYPASS": 0, "o_PLLOUTGLOBAL": clk, "o_LOCK": lock}
        if platform.default_clk == "SB_HFOSC":
            ref = Signal(name="hfosc_clk")
            m.submodules.hfosc = Instance("SB_HFOSC", p_CLKHF_DIV=f"0b{platform.hfosc_div:02b}",
                                          i_CLKHFEN=1, i_CLKHFPU=1, o_CLKHF=ref)
            ports["i_REFERENCECLK"], primitive, por_s = ref, "SB_PLL40_CORE", _ICE40_POR_OSC_S
        else:
            port = platform.request(platform.default_clk, dir="-")
            pins = {metadata.name for metadata in port.io.metadata}
            if pins <= _ICE40_PLL_PADS.get((platform.device, platform.package), set()):
                # The pad feeds the PLL directly and cannot also reach the fabric.
                ports["i_PACKAGEPIN"], primitive = port.io, "SB_PLL40_PAD"
            else:
                m.submodules.clk_buf = clk_buf = io.Buffer("i", port)
                ports["i_REFERENCECLK"], primitive = clk_buf.i, "SB_PLL40_CORE"
            por_s = _ICE40_POR_S
        params = {f"p_{key}": value for key, value in self.config.parameters().items()}
        m.submodules.pll = Instance(primitive, **params, **ports)
        return por_s

    def _ecp5_pll(self, m, platform, clk, lock) -> None:
        if platform.default_clk in ("OSCG", "OSCH", "OSCA"):
            raise PLLError(f"PLLDomain needs a clock pin, not the internal oscillator "
                           f"{platform.default_clk} of {type(platform).__qualname__}.")
        port = platform.request(platform.default_clk, dir="-")
        m.submodules.clk_buf = clk_buf = io.Buffer("i", port)
        params = {f"p_{key}": value for key, value in self.config.parameters().items()}
        attrs = {f"a_{key}": value for key, value in self.config.attributes().items()}
        m.submodules.pll = Instance(
            "EHXPLLL", **attrs, **params,
            i_CLKI=clk_buf.i, i_CLKFB=clk, o_CLKOP=clk, o_LOCK=lock,
            i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
            i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0)


def _drive_domain(m: Module, name: str, clk, lock, rst, por_cycles: int) -> None:
    """Drive clock domain ``name`` (defined by a parent) from ``clk``, in reset while ``lock``
    is low or ``rst`` is high, and for ``por_cycles`` cycles of ``clk`` after LOCK rises.

    The delay is counted on the PLL clock after LOCK, because a PAD PLL leaves no oscillator
    clock in the fabric to count on. Losing LOCK resets the domain again.

    Parameters
    ----------
    m : Module
    name : str
        The domain.
    clk, lock, rst : Value
        The PLL output, its LOCK output and a reset request (both asynchronous to ``clk``).
    por_cycles : int
        Power-on delay after LOCK, in cycles of ``clk``; 0 for none.
    """
    m.d.comb += ClockSignal(name).eq(clk)
    held = ~lock
    if por_cycles:
        m.domains.por = ClockDomain("por", local=True)
        m.d.comb += ClockSignal("por").eq(clk)
        m.submodules.lock_sync = ResetSynchronizer(~lock, domain="por")
        timer = Signal(range(por_cycles + 1))
        ready = Signal()
        with m.If(timer == por_cycles):
            m.d.por += ready.eq(1)
        with m.Else():
            m.d.por += timer.eq(timer + 1)
        held = ~ready
    m.submodules.reset_sync = ResetSynchronizer(held | rst, domain=name)
