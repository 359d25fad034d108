"""Minimal 8N1 UART receiver and transmitter with byte streams.

Both blocks run in the ``sync`` domain and time bits with a cycle counter: ``divisor`` is the
number of clock cycles per bit (``clock_hz / baud``, see :func:`uart_divisor`). One start bit
(0), eight data bits least significant first, one stop bit (1), no parity.
"""

from amaranth.hdl import C, Cat, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from .stream import rejecting

__all__ = ["MIN_DIVISOR", "UARTRx", "UARTTx", "uart_divisor"]

#: Smallest accepted divisor: the receiver needs a few cycles per bit to sample mid-bit.
MIN_DIVISOR = 4


def _check_divisor(component, divisor):
    with rejecting(component):
        _validate_divisor(divisor)


def _validate_divisor(divisor):
    if not isinstance(divisor, int) or isinstance(divisor, bool):
        raise TypeError(f"divisor must be an integer number of clock cycles per bit, "
                        f"not {divisor!r}")
    if divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be at least {MIN_DIVISOR} clock cycles per bit, "
                         f"not {divisor}")


def uart_divisor(clock_hz: float, baud: int, *, tolerance: float = 0.02) -> int:
    """Clock cycles per bit for ``baud`` at ``clock_hz``, rounded to the nearest integer.

    Raises :class:`ValueError` if the rounded divisor misses ``baud`` by more than
    ``tolerance`` (a relative error; 8N1 links tolerate about 2-3 % in total), or is below
    :data:`MIN_DIVISOR`.
    """
    if clock_hz <= 0 or baud <= 0:
        raise ValueError(f"clock_hz and baud must be positive, not {clock_hz!r} and {baud!r}")
    divisor = round(clock_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baud {baud} is too fast for a {clock_hz / 1e6:g} MHz clock: "
                         f"{clock_hz / baud:.2f} cycles per bit, at least {MIN_DIVISOR} needed")
    error = abs(clock_hz / divisor - baud) / baud
    if error > tolerance:
        raise ValueError(f"baud {baud} at {clock_hz / 1e6:g} MHz needs a divisor of "
                         f"{clock_hz / baud:.2f}; the nearest integer {divisor} is off by "
                         f"{error:.1%}, more than {tolerance:.1%}: choose another baud rate")
    return divisor


class UARTRx(wiring.Component):
    """8N1 UART receiver.

    The ``rx`` pin is synchronised with two flip-flops. A falling edge starts a byte; the
    start bit is sampled again half a bit later and the byte is abandoned if the line is high
    by then (a glitch). Data bits are sampled in the middle of each bit, then the stop bit; a
    low stop bit drops the byte, pulses ``error`` and waits for the line to go high again.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR`.

    Members
    -------
    rx : In(1)
        Serial input pin (idle high).
    o : Out(stream.Signature(unsigned(8)))
        Received bytes. ``valid`` rises in the cycle after the middle of the stop bit and
        stays high until the transfer. A UART cannot be stalled: if a byte is still waiting
        when the next one completes, the new byte replaces it and ``overrun`` pulses.
    error : Out(1)
        Pulses for one cycle on a framing error (stop bit low).
    overrun : Out(1)
        Pulses for one cycle when a received byte replaced one that was never taken.
    """

    def __init__(self, divisor: int):
        _check_divisor(self, divisor)
        self.divisor = divisor
        super().__init__({
            "rx":      In(1, init=1),
            "o":       Out(stream.Signature(unsigned(8))),
            "error":   Out(1),
            "overrun": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(self.divisor))
        bits  = Signal(range(9))
        shift = Signal(8)

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        m.d.sync += [self.error.eq(0), self.overrun.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bits.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), shift.eq(Cat(shift[1:], rx))]
                    m.d.sync += bits.eq(bits + 1)
                    with m.If(bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    m.d.sync += [self.o.payload.eq(shift), self.o.valid.eq(1)]
                    with m.If(self.o.valid & ~self.o.ready):
                        m.d.sync += self.overrun.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += self.error.eq(1)
                    m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """8N1 UART transmitter.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR`.

    Members
    -------
    i : In(stream.Signature(unsigned(8)))
        Bytes to send. ``ready`` is high while the transmitter is idle (a register, independent
        of ``valid``); a byte takes ``10 * divisor`` cycles on the line and the next one is
        accepted in the cycle after its stop bit ends.
    tx : Out(1)
        Serial output pin (idle high).
    """

    def __init__(self, divisor: int):
        _check_divisor(self, divisor)
        self.divisor = divisor
        super().__init__({
            "i":  In(stream.Signature(unsigned(8))),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        bits  = Signal(range(10))
        shift = Signal(10, init=0x3FF)  # stop, data[7:0], start; shifted out LSB first
        busy  = Signal()

        m.d.comb += [self.i.ready.eq(~busy), self.tx.eq(shift[0])]
        with m.If(~busy):
            with m.If(self.i.valid):
                m.d.sync += [
                    shift.eq(Cat(C(0, 1), self.i.payload, C(1, 1))),
                    timer.eq(self.divisor - 1),
                    bits.eq(0),
                    busy.eq(1),
                ]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [timer.eq(self.divisor - 1), shift.eq(Cat(shift[1:], C(1, 1))),
                         bits.eq(bits + 1)]
            with m.If(bits == 9):
                m.d.sync += busy.eq(0)
        return m
