"""``hwgen run``: stream inputs to a flashed board over its serial port and collect results.

The client quantizes float inputs with the build's input quantizer, keeps a few requests in
flight (so the link never idles while the board computes), matches replies by tag, and resends
a frame whose reply was an error, was corrupt, or did not come in time. Requests are encoded
and replies decoded by :mod:`hwgen.boards.protocol`, the code the full-system simulation
checks against the hardware.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..compiler.errors import HwgenError
from ..hw.host_link import END, VERDICTS
from ..sim import golden
from .protocol import LinkDescription, ReplyDecoder

__all__ = ["HostRunError", "RunResult", "run"]


class HostRunError(HwgenError):
    """The board did not answer, or kept answering with errors."""


@dataclass
class RunResult:
    """What a run measured: ``outputs`` ``[frames, n_out]`` (the accelerator's integers),
    ``predicted`` classes, wall seconds, frames per second over the link, and how many
    requests had to be resent, by reason."""

    outputs: np.ndarray
    predicted: np.ndarray
    seconds: float
    resent: dict = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return len(self.outputs) / self.seconds if self.seconds > 0 else float("inf")


def _open(port: str, baud: int):
    try:
        import serial
    except ImportError:  # pragma: no cover - a dependency of hwgen
        raise HostRunError("pyserial is not installed: pip install pyserial") from None
    try:
        return serial.serial_for_url(port, baudrate=baud, timeout=0.01, write_timeout=5)
    except (serial.SerialException, ValueError) as exc:
        raise HostRunError(f"cannot open serial port {port!r}: {exc}. Check the board is "
                           f"plugged in and which port it is (ls /dev/ttyUSB* /dev/ttyACM*); "
                           f"on Linux your user may need the dialout group.") from None


def run(build_dir, port: str, inputs, *, window: int = 2, timeout_s: float = 1.0,
        retries: int = 3, progress=None, serial_port=None) -> RunResult:
    """Send every row of ``inputs`` (model inputs, float or integer, ``[N, ...]``) to the
    board behind ``port`` and return the results in input order.

    Parameters
    ----------
    build_dir : path
        A board build folder (its ``host_link.json`` says the frame format, quantizer and
        baud rate).
    port : str
        Serial port (``/dev/ttyUSB1``; any pyserial URL, e.g. ``socket://host:port``).
    window : int
        Requests in flight at once (at most the board's verdict queue,
        :data:`~hwgen.hw.host_link.VERDICTS`).
    timeout_s : float
        Seconds to wait for a reply before resending the request (at least three times the
        wire time of the requests in flight).
    retries : int
        Resends per frame before giving up with :class:`HostRunError`.
    progress : callable, optional
        Called with the number of frames answered so far.
    serial_port : optional
        An open pyserial-like object to use instead of opening ``port`` (tests).
    """
    desc = LinkDescription.read(build_dir)
    fmt = desc.format
    x = np.asarray(inputs)
    if x.ndim < 1 or len(x) == 0:
        raise HostRunError("no inputs to send")
    if x.dtype.kind not in "biuf":
        raise HostRunError(f"inputs must be numbers, not {x.dtype}")
    if int(np.prod(x.shape[1:])) != fmt.n_in:
        raise HostRunError(f"each input must have {fmt.n_in} elements "
                           f"({desc.input_quant.shape}), not {x.shape[1:]}")
    codes = golden.input_quant(desc.input_quant, x)
    if not 1 <= window <= VERDICTS:
        raise HostRunError(f"window must be between 1 and {VERDICTS}, not {window}")

    # A reply may wait behind the requests in flight: never time out before they could pass.
    wire_s = 10 * (len(fmt.request(0, codes[0])) + fmt.reply_bytes + 4) / desc.baud
    timeout_s = max(timeout_s, 3 * window * wire_s)
    ser = serial_port if serial_port is not None else _open(port, desc.baud)
    decoder = ReplyDecoder(fmt)
    outputs = np.zeros((len(codes), fmt.n_out), dtype=np.int64)
    pending: OrderedDict[int, tuple[int, float]] = OrderedDict()  # tag -> (frame, sent at)
    attempts = np.zeros(len(codes), dtype=np.int64)
    queue = list(range(len(codes)))[::-1]  # frames still to send, next last
    resent: dict[str, int] = {}
    answered = 0
    next_tag = 0
    start = time.perf_counter()
    try:
        if hasattr(ser, "reset_input_buffer"):
            ser.reset_input_buffer()  # replies to an earlier run are not ours
        ser.write(bytes([END]))  # resynchronise: ends whatever the board was receiving
        while answered < len(codes):
            while queue and len(pending) < window:
                frame = queue.pop()
                attempts[frame] += 1
                if attempts[frame] > retries + 1:
                    raise HostRunError(f"frame {frame}: no good reply after {retries} "
                                       f"resends (last problems: {resent}). Is the board "
                                       f"running this build ({build_dir})?")
                tag, next_tag = next_tag, (next_tag + 1) & 0xFF
                pending[tag] = (frame, time.perf_counter())
                ser.write(fmt.request(tag, codes[frame]))
            for reply in decoder.feed(ser.read(max(1, ser.in_waiting or 1))):
                if reply.tag not in pending:
                    continue  # a stale reply to a request already resent
                frame, _ = pending.pop(reply.tag)
                if reply.ok:
                    outputs[frame] = reply.outputs
                    answered += 1
                    if progress:
                        progress(answered)
                else:
                    resent[reply.status] = resent.get(reply.status, 0) + 1
                    queue.append(frame)
            now = time.perf_counter()
            for tag, (frame, sent) in list(pending.items()):
                if now - sent > timeout_s:
                    del pending[tag]
                    resent["timeout"] = resent.get("timeout", 0) + 1
                    queue.append(frame)
                    ser.write(bytes([END]))
    finally:
        if serial_port is None:
            ser.close()
    seconds = time.perf_counter() - start
    predicted = outputs[:, 0] if desc.output == "class" else np.argmax(outputs, axis=1)
    return RunResult(outputs, predicted, seconds, resent)
