"""Board catalogue: names, aliases, the unknown-board error, device figures, and that every
board's platform prepares a design using its uart and status LED (no synthesis)."""

import dataclasses

import pytest
from amaranth.build import ResourceError
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import io
from amaranth_boards.icebreaker import ICEBreakerPlatform

from hwgen.boards.catalogue import ALIASES, BOARDS, Board, UnknownBoardError, get_board
from hwgen.boards.flash import PROGRAMMERS
from hwgen.compiler.errors import HwgenError

#: Per board: uart rx and tx pins, status LED pin and whether it is active low.
PINS = {
    "icebreaker":     ("6", "9", "37", True),
    "upduino-v3":     ("25", "23", "39", True),
    "upduino-v3-osc": ("25", "23", "39", True),
    "icestick":       ("9", "8", "95", False),
    "tinyfpga-bx":    ("A1", "A2", "B3", False),
    "ulx3s-12f":      ("M1", "L4", "B2", False),
    "ulx3s-25f":      ("M1", "L4", "B2", False),
    "ulx3s-45f":      ("M1", "L4", "B2", False),
    "ulx3s-85f":      ("M1", "L4", "B2", False),
    "orangecrab-25f": ("N17", "M18", "M3", True),
    "orangecrab-85f": ("N17", "M18", "M3", True),
}

#: Lattice data sheet figures: logic cells / LUT4s, block RAMs, DSPs, SPRAMs.
DEVICES = {
    "iCE40UP5K": (5280, 30, 8, 4),
    "iCE40HX1K": (1280, 16, 0, 0),
    "iCE40LP8K": (7680, 32, 0, 0),
    "LFE5U-12F": (12000, 32, 28, 0),
    "LFE5U-25F": (24288, 56, 28, 0),
    "LFE5U-45F": (43848, 108, 72, 0),
    "LFE5U-85F": (83640, 208, 156, 0),
}


def test_icebreaker_and_aliases():
    board = get_board("icebreaker")
    assert board.platform_cls is ICEBreakerPlatform
    assert isinstance(board.platform(), ICEBreakerPlatform)
    assert (board.device, board.package, board.family) == ("iCE40UP5K", "SG48", "ice40")
    assert board.totals == {"lut": 5280, "ff": 5280, "bram": 30, "dsp": 8, "spram": 4}
    assert board.clock_mhz == 12.0 and board.baud == 115200
    for alias in ("ice40", "ICE40", " iCEBreaker "):
        assert get_board(alias) is board
    assert get_board(board) is board
    assert hash(board) == hash(get_board("ice40"))


def test_unknown_board():
    with pytest.raises(UnknownBoardError) as info:
        get_board("de10nano")
    message = str(info.value)
    assert "'de10nano'" in message and "icebreaker" in message and "ice40" in message
    assert "hwgen boards" in message
    assert isinstance(info.value, HwgenError) and isinstance(info.value, ValueError)


def test_catalogue_has_the_issue_boards_and_aliases():
    assert set(BOARDS) == set(PINS)
    expected = {"ice40": "icebreaker", "ecp5": "ulx3s-85f", "ulx3s": "ulx3s-85f",
                "orangecrab": "orangecrab-25f", "upduino": "upduino-v3",
                "tinyfpga": "tinyfpga-bx", "up5k": "icebreaker", "icebreaker-up5k": "icebreaker"}
    for alias, name in expected.items():
        assert get_board(alias).name == name
    for alias, name in ALIASES.items():
        assert name in BOARDS and alias not in BOARDS and alias == alias.lower()
    assert get_board("ulx3s-85f").aliases == ["ecp5", "ulx3s"]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_board_is_complete(name):
    board = BOARDS[name]
    assert isinstance(board, Board) and board.name == name
    assert board.family in ("ice40", "ecp5")
    assert board.family == ("ice40" if board.device.startswith("iCE40") else "ecp5")
    lut, bram, dsp, spram = DEVICES[board.device]
    assert board.totals == {"lut": lut, "ff": lut, "bram": bram, "dsp": dsp, "spram": spram}
    platform = board.platform()
    assert (platform.device, platform.package) == (board.device, board.package)
    assert platform.default_clk_frequency == board.clock_hz
    assert platform.lookup("uart", 0) is not None
    assert board.programmer in PROGRAMMERS and board.usb
    assert (board.usb_serial is None) != (board.uart_header is None)
    assert board.status_led is not None and board.status_led.where
    assert board.baud == 115200 and board.title
    assert board.host_link.startswith("USB serial" if board.usb_serial else "header pins: ")


class UartEcho(Elaboratable):
    """A trivial design on the board's uart and status LED, as BoardTop uses them."""

    def __init__(self, board):
        self.board = board
        self.led_port = None

    def elaborate(self, platform):
        m = Module()
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx = rx = io.Buffer("i", uart.rx)
        m.submodules.tx = tx = io.Buffer("o", uart.tx)
        self.led_port = self.board.request_status_led(platform)
        m.submodules.led = led = io.Buffer("o", self.led_port)
        count = Signal(8)
        m.d.sync += [tx.o.eq(rx.i), count.eq(count + 1), led.o.eq(count[-1])]
        return m


def _constraints(plan) -> str:
    name = next(f for f in plan.files if f.endswith((".pcf", ".lpf")))
    text = plan.files[name]
    return text if isinstance(text, str) else text.decode()


def _pin_of(constraints: str, port: str) -> str:
    for line in constraints.splitlines():
        if line.startswith(f"set_io {port} "):  # iCE40 .pcf
            return line.split()[-1]
        if line.startswith(f'LOCATE COMP "{port}" SITE '):  # ECP5 .lpf
            return line.split('"')[3]
    raise AssertionError(f"{port} not in the constraints:\n{constraints}")


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_platform_prepares_uart_and_status_led(name):
    board = BOARDS[name]
    top = UartEcho(board)
    plan = board.platform().build(top, do_build=False, do_program=False)
    constraints = _constraints(plan)
    rx, tx, led, active_low = PINS[name]
    assert _pin_of(constraints, "uart_0__rx__io") == rx
    assert _pin_of(constraints, "uart_0__tx__io") == tx
    spec = board.status_led
    led_port = f"{spec.resource}_{spec.number}" + (f"__{spec.colour}" if spec.colour else "")
    assert _pin_of(constraints, f"{led_port}__io") == led
    # Only that LED is in the design (an RGB LED's other colours stay unconfigured).
    placed = [line for line in constraints.splitlines() if line.startswith(("set_io", "LOCATE"))]
    assert sum("led" in line for line in placed) == 1, placed
    assert top.led_port.invert == (active_low,)  # the buffer's 1 lights the LED everywhere
    if board.uart_header is not None and board.family == "ecp5":
        assert 'IOBUF PORT "uart_0__rx__io" IO_TYPE=LVCMOS33 PULLMODE=UP' in constraints


def test_upduino_clocks():
    rtlil = {}
    for name in ("upduino-v3", "upduino-v3-osc"):
        plan = BOARDS[name].platform().build(UartEcho(BOARDS[name]), do_build=False)
        rtlil[name] = plan.files["top.il"]
        constraints = _constraints(plan)
        assert ("set_io clk12_0__io 20" in constraints) == (name == "upduino-v3-osc")
    assert 'parameter \\CLKHF_DIV "0b10"' in rtlil["upduino-v3"]  # 48 MHz / 4
    assert "SB_HFOSC" not in rtlil["upduino-v3-osc"]


def test_status_led_contract():
    board = get_board("orangecrab")
    platform = board.platform()
    port = board.request_status_led(platform)
    assert len(port) == 1 and port.direction == io.Direction.Output
    with pytest.raises(ResourceError):
        board.request_status_led(platform)
    assert dataclasses.replace(board, status_led=None).request_status_led(platform) is None
    assert dataclasses.replace(board, has_leds=False).request_status_led(platform) is None
