"""Status LED: shows on one LED that the board is configured, answering, and healthy."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .stream import rejecting

__all__ = ["StatusLED"]


class StatusLED(wiring.Component):
    """Drives one LED from the host link's events.

    - lit: configured and idle;
    - dark for ``flash`` cycles after each ``ok`` reply (a flicker while frames flow);
    - dark for ``hold`` cycles after an error reply (a second-long gap: a bad request);
    - blinking with period ``2 * blink`` cycles forever once ``fault`` is set (the accelerator
      broke its framing: a hardware bug, reset the board).

    Parameters
    ----------
    flash, hold, blink : int
        Durations in clock cycles (:meth:`for_clock` derives them from a frequency).

    Members
    -------
    ok, error : In(1)
        Pulses: a reply started, by its status.
    fault : In(1)
        Sticky fault.
    led : Out(1)
        The LED, active high.
    """

    def __init__(self, flash: int, hold: int, blink: int):
        with rejecting(self):
            for name, value in (("flash", flash), ("hold", hold), ("blink", blink)):
                if not isinstance(value, int) or value < 1:
                    raise ValueError(f"{name} must be a positive number of cycles, not "
                                     f"{value!r}")
        self.flash, self.hold, self.blink = flash, hold, blink
        super().__init__({"ok": In(1), "error": In(1), "fault": In(1), "led": Out(1)})

    @classmethod
    def for_clock(cls, clock_hz: float) -> "StatusLED":
        """20 ms flicker, 1 s error gap, 4 Hz fault blink at ``clock_hz``."""
        return cls(flash=max(1, round(clock_hz * 0.02)), hold=max(1, round(clock_hz)),
                   blink=max(1, round(clock_hz / 8)))

    def elaborate(self, platform):
        m = Module()
        dark  = Signal(range(max(self.flash, self.hold) + 1))
        timer = Signal(range(self.blink))
        phase = Signal()
        with m.If(self.error):
            m.d.sync += dark.eq(self.hold)
        with m.Elif(self.ok & (dark < self.flash)):
            m.d.sync += dark.eq(self.flash)
        with m.Elif(dark != 0):
            m.d.sync += dark.eq(dark - 1)
        with m.If(timer == self.blink - 1):
            m.d.sync += [timer.eq(0), phase.eq(~phase)]
        with m.Else():
            m.d.sync += timer.eq(timer + 1)
        with m.If(self.fault):
            m.d.comb += self.led.eq(phase)
        with m.Else():
            m.d.comb += self.led.eq(dark == 0)
        return m
