"""Board top: the accelerator behind a UART host link on the board's serial pins.

Every bitstream is built from a :class:`BoardTop`, so the accelerator's input and output reach
pins and synthesis keeps all of it (an unconnected accelerator would be optimised away and its
utilisation figures would mean nothing).
"""

from amaranth.hdl import ClockDomain, Elaboratable, Module
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from ..hw.host_link import HostLink
from ..hw.status_led import StatusLED
from ..hw.uart import UARTRx, UARTTx, uart_divisor
from .catalogue import Board, get_board
from .pll import PLLDomain

__all__ = ["BoardTop", "SerialAccelerator"]


def _stream_width(port) -> int:
    return port.signature.members["payload"].shape.size - 1  # {"data": W, "last": 1}


class SerialAccelerator(wiring.Component):
    """The accelerator behind a :class:`~hwgen.hw.host_link.HostLink` and a UART, with a
    status LED and pin-level ports; platform independent, so it can be simulated as a whole.

    Parameters
    ----------
    accelerator : wiring.Component
        Has ``i``/``o`` framed streams and ``frame_error``.
    beats_in, beats_out : int
        Beats per frame on the accelerator's input and output.
    divisor : int
        UART clock cycles per bit.
    clock_hz : float
        Clock frequency, for the status LED's timing
        (:meth:`~hwgen.hw.status_led.StatusLED.for_clock`).

    Members
    -------
    rx : In(1)
        Serial line from the host (idle high).
    tx : Out(1)
        Serial line to the host (idle high).
    led : Out(1)
        Status LED, active high (:class:`~hwgen.hw.status_led.StatusLED`).
    fault : Out(1)
        Sticky: the accelerator's ``frame_error`` or a misframed accelerator output (a
        hardware bug; replies then say ``fault``). Request errors are answered, not latched.
    """

    def __init__(self, accelerator, beats_in: int, beats_out: int, divisor: int,
                 clock_hz: float):
        self.accelerator = accelerator
        self.in_width  = _stream_width(accelerator.i)
        self.out_width = _stream_width(accelerator.o)
        self.link = HostLink(self.in_width, self.out_width, beats_in, beats_out)
        self.uart_rx = UARTRx(divisor)
        self.uart_tx = UARTTx(divisor)
        self.status = StatusLED.for_clock(clock_hz)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "led": Out(1),
                          "fault": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = acc = self.accelerator
        m.submodules.link = link = self.link
        m.submodules.uart_rx = uart_rx = self.uart_rx
        m.submodules.uart_tx = uart_tx = self.uart_tx
        m.submodules.status = status = self.status

        wiring.connect(m, uart_rx.o, link.rx)
        wiring.connect(m, link.beats_o, acc.i)
        wiring.connect(m, acc.o, link.beats_i)
        wiring.connect(m, link.tx, uart_tx.i)
        m.d.comb += [
            uart_rx.rx.eq(self.rx),
            self.tx.eq(uart_tx.tx),
            link.line_error.eq(uart_rx.error | uart_rx.overrun),
            link.fault.eq(acc.frame_error),
            self.fault.eq(acc.frame_error | link.misframed),
            status.ok.eq(link.replied_ok),
            status.error.eq(link.replied_error),
            status.fault.eq(self.fault),
            self.led.eq(status.led),
        ]
        return m


class BoardTop(Elaboratable):
    """Top-level elaboratable for a board build.

    Instantiates a :class:`SerialAccelerator` on ``platform.request("uart", 0)`` at the board's
    baud rate, and drives the board's status LED from it.

    Parameters
    ----------
    accelerator : wiring.Component
        Ports ``i: In(framed_signature(W_in))``, ``o: Out(framed_signature(W_out))``,
        ``frame_error: Out(1)``.
    beats_in, beats_out : int
        Beats per frame.
    board : str or Board
        Board name or alias (see :func:`~hwgen.boards.catalogue.get_board`).
    clock_hz : float, optional
        Run the design from the board's PLL at the highest frequency not above this
        (:class:`~hwgen.boards.pll.PLLDomain`); default: the board oscillator, no PLL.

    Attributes
    ----------
    clock_hz : float
        The frequency the design runs at (the PLL's output, or the oscillator's).
    divisor : int
        UART clock cycles per bit at ``clock_hz``.
    """

    def __init__(self, accelerator, beats_in: int, beats_out: int, board: str | Board,
                 clock_hz: float | None = None):
        self.board = get_board(board)
        self.pll = None
        if clock_hz is not None:
            self.pll = PLLDomain.for_board(self.board, clock_hz)
            self.clock_hz = self.pll.frequency_hz
        else:
            self.clock_hz = self.board.clock_hz
        for name in ("i", "o", "frame_error"):
            if name not in getattr(accelerator, "signature", wiring.Signature({})).members:
                self._MustUse__silence = True  # never built, so never elaborated
                raise TypeError(f"accelerator must be a wiring.Component with ports i, o and "
                                f"frame_error; {accelerator!r} has no {name!r}")
        self.accelerator = accelerator
        self.beats_in  = beats_in
        self.beats_out = beats_out
        self.divisor   = uart_divisor(self.clock_hz, self.board.baud)

    def elaborate(self, platform):
        m = Module()
        m.submodules.serial = serial = SerialAccelerator(
            self.accelerator, self.beats_in, self.beats_out, self.divisor, self.clock_hz)
        if platform is None:
            return m
        if self.pll is not None:
            m.domains.sync = ClockDomain()  # the PLL drives it; the top must define it
            m.submodules.pll = self.pll
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [serial.rx.eq(rx_buf.i), tx_buf.o.eq(serial.tx)]
        led = self.board.request_status_led(platform)
        if led is not None:
            m.submodules.led_buf = led_buf = io.Buffer("o", led)
            m.d.comb += led_buf.o.eq(serial.led)
        return m
