"""Status LED: shows on one LED that the board is configured, answering, and healthy."""

import math

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .stream import rejecting

__all__ = ["StatusLED"]


class StatusLED(wiring.Component):
    """Drives one LED from the host link's events.

    - lit: configured and idle;
    - dark for ``flash`` ticks after an ``ok`` reply that finds it lit for at least as long
      (a flicker, at most half the time, while frames flow);
    - dark for ``hold`` ticks after an error reply (a second-long gap: a bad request);
    - blinking with period ``2 * blink`` ticks forever once ``fault`` is set (the accelerator
      broke its framing: a hardware bug, reset the board).

    Durations are counted in ticks of ``2**tick_bits`` cycles, so that the counters stay a few
    bits wide (a 24-bit down-counter with loads became a 30 ns path on the UP5K).

    Parameters
    ----------
    flash, hold, blink : int
        Durations in ticks (:meth:`for_clock` derives them from a frequency).
    tick_bits : int
        A tick is ``2**tick_bits`` clock cycles.

    Members
    -------
    ok, error : In(1)
        Pulses: a reply started, by its status.
    fault : In(1)
        Sticky fault.
    led : Out(1)
        The LED, active high.
    """

    def __init__(self, flash: int, hold: int, blink: int, tick_bits: int = 0):
        with rejecting(self):
            for name, value in (("flash", flash), ("hold", hold), ("blink", blink)):
                if not isinstance(value, int) or value < 1:
                    raise ValueError(f"{name} must be a positive number of ticks, not "
                                     f"{value!r}")
            if not isinstance(tick_bits, int) or tick_bits < 0:
                raise ValueError(f"tick_bits must be a non-negative integer, not {tick_bits!r}")
        self.flash, self.hold, self.blink = flash, hold, blink
        self.tick_bits = tick_bits
        super().__init__({"ok": In(1), "error": In(1), "fault": In(1), "led": Out(1)})

    @classmethod
    def for_clock(cls, clock_hz: float) -> "StatusLED":
        """20 ms flicker, 1 s error gap, 4 Hz fault blink at ``clock_hz`` (ticks of about
        1/128 s)."""
        tick_bits = max(0, math.ceil(math.log2(max(1.0, clock_hz / 128))))
        tick_s = 2**tick_bits / clock_hz
        return cls(flash=max(1, round(0.02 / tick_s)), hold=max(1, round(1 / tick_s)),
                   blink=max(1, round(0.125 / tick_s)), tick_bits=tick_bits)

    def elaborate(self, platform):
        m = Module()
        tick = Signal()
        if self.tick_bits:
            prescale = Signal(self.tick_bits)
            m.d.sync += prescale.eq(prescale + 1)
            m.d.comb += tick.eq(prescale == 0)
        else:
            m.d.comb += tick.eq(1)
        dark  = Signal(range(max(self.flash, self.hold) + 1))
        timer = Signal(range(self.blink))
        phase = Signal()
        # Ticks lit since the last dark spell: a flicker needs as long lit as it lasts, so
        # the LED stays mostly lit while frames stream (dark would look like an error).
        lit = Signal(range(self.flash + 1), init=self.flash)
        with m.If(dark != 0):
            m.d.sync += lit.eq(0)
        with m.Elif(tick & (lit != self.flash)):
            m.d.sync += lit.eq(lit + 1)
        with m.If(self.error):
            m.d.sync += dark.eq(self.hold)
        with m.Elif(self.ok & (dark == 0) & (lit == self.flash)):
            m.d.sync += dark.eq(self.flash)
        with m.Elif(tick & (dark != 0)):
            m.d.sync += dark.eq(dark - 1)
        with m.If(tick):
            with m.If(timer == self.blink - 1):
                m.d.sync += [timer.eq(0), phase.eq(~phase)]
            with m.Else():
                m.d.sync += timer.eq(timer + 1)
        with m.If(self.fault):
            m.d.comb += self.led.eq(phase)
        with m.Else():
            m.d.comb += self.led.eq(dark == 0)
        return m
