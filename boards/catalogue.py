"""The boards hwgen builds for: name, amaranth-boards platform, device and its resources, clock,
host link pins, status LED and programmer.

A board belongs to a *family* (``"ice40"``, ``"ecp5"``) that decides which YoWASP tools build
it and how their reports are read (see :mod:`hwgen.boards.build`). To add a board, add a
:class:`Board` to :data:`BOARDS` (and a row to ``docs/boards.md``) and, for a new family, its
tool and cell tables in :mod:`hwgen.boards.build`.

Device totals come from the Lattice data sheets: iCE40 UltraPlus (FPGA-DS-02008, UP5K: 5,280
logic cells, 30 EBRs of 4 Kbit, 4 SPRAMs of 256 Kbit, 8 SB_MAC16), iCE40 LP/HX (FPGA-DS-02029,
HX1K: 1,280 LCs, 16 EBRs; LP8K: 7,680 LCs, 32 EBRs), ECP5/ECP5-5G (FPGA-DS-02012, table 1.1:
LUT4s, 18 Kbit sysMEM blocks, 18x18 multipliers). Each logic cell / LUT4 has one flip-flop.
"""

from dataclasses import dataclass, field

from amaranth.build import Attrs
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.icestick import ICEStickPlatform
from amaranth_boards.orangecrab_r0_2 import OrangeCrabR0_2_25FPlatform, OrangeCrabR0_2_85FPlatform
from amaranth_boards.resources import UARTResource
from amaranth_boards.tinyfpga_bx import TinyFPGABXPlatform
from amaranth_boards.ulx3s import (
    ULX3S_12F_Platform,
    ULX3S_25F_Platform,
    ULX3S_45F_Platform,
    ULX3S_85F_Platform,
)
from amaranth_boards.upduino_v3 import UpduinoV3Platform

from ..compiler.errors import HwgenError

__all__ = ["ALIASES", "BOARDS", "Board", "BoardLED", "HeaderUART", "USBDevice",
           "UnknownBoardError", "get_board"]


class UnknownBoardError(HwgenError, ValueError):
    """The board name is neither a known board nor an alias."""


@dataclass(frozen=True)
class USBDevice:
    """A USB device a programmer talks to.

    Attributes
    ----------
    vendor, product : int
        USB vendor and product IDs (``0x0403``, ``0x6010``).
    name : str
        What it is (``"FTDI FT2232H"``), for messages.
    """

    vendor: int
    product: int
    name: str

    @property
    def id(self) -> str:
        """``"0403:6010"``, as ``lsusb`` shows it."""
        return f"{self.vendor:04x}:{self.product:04x}"

    def __str__(self) -> str:
        return f"{self.id} ({self.name})"


@dataclass(frozen=True)
class HeaderUART:
    """A UART on header pins, for a 3.3 V USB-serial adapter (boards without a USB serial
    bridge of their own).

    Attributes
    ----------
    tx, rx : str
        The FPGA's transmit and receive pins: pin names of ``conn``, or package pins when
        ``conn`` is None. The adapter's RX goes to ``tx``, its TX to ``rx``.
    conn : tuple[str, int] or None
        The amaranth-boards connector the pins belong to.
    attrs : dict
        I/O attributes (I/O standard, a pull-up so an unconnected ``rx`` idles high).
    where : str
        Where the pins are on the board, as ``hwgen boards`` and docs/boards.md show it.
    """

    tx: str
    rx: str
    conn: tuple | None
    attrs: dict = field(hash=False, compare=False)
    where: str = ""

    def resource(self):
        """The ``uart`` 0 resource (amaranth-boards' ``UARTResource``) on these pins."""
        return UARTResource(0, rx=self.rx, tx=self.tx, conn=self.conn,
                            attrs=Attrs(**self.attrs))


@dataclass(frozen=True)
class BoardLED:
    """Which LED shows the host link's status (docs/host-link.md).

    Attributes
    ----------
    resource : str
        ``"led"`` or ``"rgb_led"``.
    number : int
        Resource number.
    colour : str or None
        For an ``rgb_led``: the subsignal used (``"g"``); the other colours stay unused.
    where : str
        The LED on the board, for people.
    """

    resource: str
    number: int = 0
    colour: str | None = None
    where: str = ""


@dataclass(frozen=True)
class Board:
    """One FPGA board.

    Attributes
    ----------
    name : str
        Canonical board name (``"icebreaker"``).
    title : str
        Human name (``"iCEBreaker"``).
    family : str
        Device family, selects the tools: ``"ice40"`` or ``"ecp5"``.
    platform_cls : type
        The amaranth-boards platform class; :meth:`platform` makes a fresh, completed instance
        (a platform can be built only once).
    device : str
        Device name as the platform and nextpnr know it (``"iCE40UP5K"``).
    package : str
        Package (``"SG48"``).
    totals : dict[str, int]
        Device resources: ``lut`` (logic cells as the device counts them: iCE40 logic cells,
        ECP5 LUT4s), ``ff``, ``bram`` (block RAMs: 4 Kbit EBRs on iCE40, 18 Kbit DP16KD on
        ECP5), ``dsp`` (SB_MAC16 / MULT18X18D), ``spram``.
    clock_mhz : float
        Frequency the bitstream runs at (the board oscillator, no PLL).
    baud : int
        Host link baud rate over the board's ``uart`` resource.
    has_leds : bool
        Whether the board has an LED for the status (see :meth:`request_status_led`).
    programmer : str
        The command amaranth-boards programs the board with (``"iceprog"``).
    usb : tuple[USBDevice, ...]
        The USB device(s) the programmer looks for; any one of them will do.
    usb_serial : str or None
        The board's USB serial bridge that carries its ``uart`` resource, or None when the
        host link goes over ``uart_header``.
    uart_header : HeaderUART or None
        Header pins that :meth:`platform` adds as ``uart`` 0 on boards without a USB serial
        bridge.
    status_led : BoardLED or None
        The LED :meth:`request_status_led` returns.
    platform_attrs : dict
        Attributes set on each new platform instance (the UPduino's ``hfosc_div``).
    flash_note : str
        What to do on the board before programming it, or what programming does.
    """

    name: str
    title: str
    family: str
    platform_cls: type
    device: str
    package: str
    totals: dict = field(hash=False)
    clock_mhz: float
    baud: int = 115200
    has_leds: bool = True
    programmer: str = "iceprog"
    usb: tuple = ()
    usb_serial: str | None = None
    uart_header: HeaderUART | None = None
    status_led: BoardLED | None = None
    platform_attrs: dict = field(default_factory=dict, hash=False)
    flash_note: str = ""

    def platform(self):
        """A new instance of the board's platform, with a ``uart`` 0 resource on every board
        (:attr:`uart_header` where amaranth-boards defines none) and :attr:`platform_attrs`
        applied."""
        platform = self.platform_cls()
        for name, value in self.platform_attrs.items():
            setattr(platform, name, value)
        if self.uart_header is not None:
            platform.add_resources([self.uart_header.resource()])
        return platform

    def request_status_led(self, platform):
        """Request the status LED from ``platform`` and return its pin.

        Parameters
        ----------
        platform : amaranth.build.Platform
            A platform made by :meth:`platform`, while it elaborates a design.

        Returns
        -------
        amaranth.lib.io.PortLike or None
            A one-bit output port requested with ``dir="-"``, so wrap it in
            ``io.Buffer("o", port)``; its ``invert`` already holds the LED's active level, so a
            buffer output of 1 lights the LED on every board. None when the board has no
            status LED. For an RGB LED only the chosen colour is used (the other colours are
            left out of the design: their pins stay unconfigured).

        Raises
        ------
        amaranth.build.ResourceError
            The LED resource was already requested (request it once per design).
        """
        spec = self.status_led
        if spec is None or not self.has_leds:
            return None
        pins = platform.request(spec.resource, spec.number, dir="-")
        return getattr(pins, spec.colour) if spec.colour else pins

    @property
    def clock_hz(self) -> float:
        return self.clock_mhz * 1e6

    @property
    def host_link(self) -> str:
        """How the host reaches the board's UART, for people."""
        if self.uart_header is None:
            return f"USB serial ({self.usb_serial})"
        return f"header pins: {self.uart_header.where}"

    @property
    def aliases(self) -> list[str]:
        """The other names :func:`get_board` accepts for this board."""
        return sorted(alias for alias, name in ALIASES.items() if name == self.name)


# I/O attributes: the iCE40s' UART pins get a pull-up, like iCEBreaker's own uart resource, and
# ECP5's the equivalent PULLMODE, so a receive pin without an adapter idles high (no spurious
# start bits).
_ICE40_UART = {"IO_STANDARD": "SB_LVCMOS", "PULLUP": 1}
_ECP5_UART = {"IO_TYPE": "LVCMOS33", "PULLMODE": "UP"}

# The programmers' USB devices.
_FT2232H = USBDevice(0x0403, 0x6010, "FTDI FT2232H")
_FT232H = USBDevice(0x0403, 0x6014, "FTDI FT232H")
_FT231X = USBDevice(0x0403, 0x6015, "FTDI FT231X")
_TINYFPGA_BOOT = USBDevice(0x1D50, 0x6130, "TinyFPGA bootloader")
_ORANGECRAB_DFU = USBDevice(0x1209, 0x5AF0, "OrangeCrab DFU bootloader")

_UP5K = {"lut": 5280, "ff": 5280, "bram": 30, "dsp": 8, "spram": 4}


def _ice40(name, title, platform_cls, device, package, totals, clock_mhz, **kw):
    return Board(name=name, title=title, family="ice40", platform_cls=platform_cls,
                 device=device, package=package, totals=totals, clock_mhz=clock_mhz, **kw)


def _upduino(name: str, title: str, platform_attrs: dict) -> Board:
    return _ice40(
        name, title, UpduinoV3Platform, "iCE40UP5K", "SG48", _UP5K, 12.0, usb=(_FT232H,),
        platform_attrs=platform_attrs,
        uart_header=HeaderUART(
            tx="23", rx="25", conn=None, attrs=_ICE40_UART,
            where="TX on gpio_23, RX on gpio_25 (left header, positions 11 and 12 from the USB "
                  "end; GND at 10)"),
        status_led=BoardLED("rgb_led", 0, "g", where="the RGB LED, green (pin 39)"))


def _ulx3s(size: str, platform_cls, totals) -> Board:
    return Board(
        name=f"ulx3s-{size.lower()}", title=f"ULX3S ({size})", family="ecp5",
        platform_cls=platform_cls, device=f"LFE5U-{size}", package="BG381", totals=totals,
        clock_mhz=25.0, programmer="openFPGALoader", usb=(_FT231X,),
        usb_serial="FT231X",
        status_led=BoardLED("led", 0, where="led 0 (B2), one of the row of eight"),
        flash_note="amaranth-boards loads the ULX3S's configuration SRAM (openFPGALoader -m): "
                   "the design runs until power-off")


def _orangecrab(size: str, platform_cls, totals) -> Board:
    return Board(
        name=f"orangecrab-{size.lower()}", title=f"OrangeCrab r0.2 ({size})", family="ecp5",
        platform_cls=platform_cls, device=f"LFE5U-{size}", package="MG285", totals=totals,
        clock_mhz=48.0, programmer="dfu-util", usb=(_ORANGECRAB_DFU,),
        # Feather pins 0 and 1, the Feather standard's RX and TX (LiteX's feather_serial).
        uart_header=HeaderUART(tx="1", rx="0", conn=("io", 0), attrs=_ECP5_UART,
                               where="TX on Feather pin 1 (M18), RX on Feather pin 0 (N17)"),
        status_led=BoardLED("rgb_led", 0, "g", where="the RGB LED, green (M3)"),
        flash_note="hold the button while plugging the OrangeCrab in: its DFU bootloader "
                   "(LED fading) then waits for dfu-util")


# ECP5 (FPGA-DS-02012 table 1.1). The data sheet gives the 12F (a 25F die, sold as smaller) as
# "12K" LUTs only; hwgen folds to that, not to what the die holds.
_ECP5_12F = {"lut": 12000, "ff": 12000, "bram": 32, "dsp": 28, "spram": 0}
_ECP5_25F = {"lut": 24288, "ff": 24288, "bram": 56, "dsp": 28, "spram": 0}
_ECP5_45F = {"lut": 43848, "ff": 43848, "bram": 108, "dsp": 72, "spram": 0}
_ECP5_85F = {"lut": 83640, "ff": 83640, "bram": 208, "dsp": 156, "spram": 0}

BOARDS: dict[str, Board] = {
    board.name: board for board in [
        _ice40("icebreaker", "iCEBreaker", ICEBreakerPlatform, "iCE40UP5K", "SG48", _UP5K,
               12.0, usb=(_FT2232H,), usb_serial="FT2232H, channel B",
               status_led=BoardLED("led", 1, where="the green LED (pin 37)")),
        # SB_HFOSC runs at 48 MHz / 2**hfosc_div; amaranth-boards sets hfosc_div = 0 (48 MHz),
        # faster than a UP5K datapath closes timing, so 12 MHz, like the iCEBreaker. The
        # board's FT232H programs the SPI flash and shares its pins: the UART goes to headers.
        _upduino("upduino-v3", "UPduino v3", {"hfosc_div": 2}),
        # The oscillator is specified to +-10 % only, more than a UART tolerates at worst; the
        # board's 12 MHz crystal oscillator reaches pin 20 once the OSC jumper is soldered.
        _upduino("upduino-v3-osc", "UPduino v3 (OSC jumper)",
                 {"default_clk": "clk12"}),
        _ice40("icestick", "iCEstick", ICEStickPlatform, "iCE40HX1K", "TQ144",
               {"lut": 1280, "ff": 1280, "bram": 16, "dsp": 0, "spram": 0}, 12.0,
               usb=(_FT2232H,), usb_serial="FT2232H, channel B",
               status_led=BoardLED("led", 4, where="the green LED in the middle (pin 95)")),
        _ice40("tinyfpga-bx", "TinyFPGA BX", TinyFPGABXPlatform, "iCE40LP8K", "CM81",
               {"lut": 7680, "ff": 7680, "bram": 32, "dsp": 0, "spram": 0}, 16.0,
               programmer="tinyprog", usb=(_TINYFPGA_BOOT,),
               # Pins 1 and 2, the pins LiteX's tinyfpga_bx platform uses for its serial port.
               uart_header=HeaderUART(tx="1", rx="2", conn=("gpio", 0), attrs=_ICE40_UART,
                                      where="TX on pin 1 (A2), RX on pin 2 (A1)"),
               status_led=BoardLED("led", 0, where="the user LED (B3)"),
               flash_note="plug the board in (or press its reset button) so that its "
                          "bootloader is running"),
        _ulx3s("12F", ULX3S_12F_Platform, _ECP5_12F),
        _ulx3s("25F", ULX3S_25F_Platform, _ECP5_25F),
        _ulx3s("45F", ULX3S_45F_Platform, _ECP5_45F),
        _ulx3s("85F", ULX3S_85F_Platform, _ECP5_85F),
        _orangecrab("25F", OrangeCrabR0_2_25FPlatform, _ECP5_25F),
        _orangecrab("85F", OrangeCrabR0_2_85FPlatform, _ECP5_85F),
    ]
}

#: Family and convenience names for boards.
ALIASES: dict[str, str] = {
    "ice40": "icebreaker",
    "icebreaker-up5k": "icebreaker",
    "up5k": "icebreaker",
    "upduino": "upduino-v3",
    "upduino3": "upduino-v3",
    "upduino-v3.0": "upduino-v3",
    "hx1k": "icestick",
    "tinyfpga": "tinyfpga-bx",
    "tinyfpga_bx": "tinyfpga-bx",
    "lp8k": "tinyfpga-bx",
    "ecp5": "ulx3s-85f",
    "ulx3s": "ulx3s-85f",
    "orangecrab": "orangecrab-25f",
}


def get_board(name: str | Board) -> Board:
    """The :class:`Board` called ``name`` (case-insensitive) or one of its aliases.

    Raises :class:`UnknownBoardError` (a :class:`ValueError`) listing the known names.
    """
    if isinstance(name, Board):
        return name
    if not isinstance(name, str):
        raise TypeError(f"board must be a board name, not {name!r}")
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key in BOARDS:
        return BOARDS[key]
    known = ", ".join(sorted(BOARDS))
    aliases = ", ".join(f"{alias} -> {target}" for alias, target in sorted(ALIASES.items()))
    raise UnknownBoardError(f"Unknown board {name!r}. Known boards: {known} (aliases: "
                            f"{aliases}). Pass one of these names as the board; "
                            f"`hwgen boards` describes them.")
