"""The host's end of the host link protocol (specified in :mod:`hwgen.hw.host_link`): request
encoding and reply decoding, shared by ``hwgen run`` and the full-system simulation.

:class:`LinkFormat` describes one accelerator's frames (elements, bits and lanes in and out);
a build writes it with the input quantizer into ``host_link.json`` so that ``hwgen run`` needs
nothing but the build folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..compiler.dataflow import InputQuant
from ..compiler.errors import HwgenError
from ..hw.host_link import CRC, END, ESC, ESC_END, ESC_ESC, PROTOCOL_VERSION, STATUS, nbytes
from ..sim import beats as _beats

__all__ = ["LinkDescription", "LinkFormat", "ProtocolError", "Reply", "ReplyDecoder",
           "checksum", "slip"]

_CRC = CRC(8)
_STATUS_NAMES = {code: name for name, code in STATUS.items()}
HOST_LINK_FILE = "host_link.json"


class ProtocolError(HwgenError):
    """A reply or link description that does not follow the protocol."""


def checksum(body: bytes) -> bytes:
    """The CRC-16 of ``body`` as the link sends it (least significant byte first)."""
    return _CRC.compute(body).to_bytes(2, "little")


def slip(body: bytes) -> bytes:
    """``body`` as one SLIP packet: ``END``, the escaped bytes, ``END``."""
    out = bytearray([END])
    for b in body:
        if b == END:
            out += bytes([ESC, ESC_END])
        elif b == ESC:
            out += bytes([ESC, ESC_ESC])
        else:
            out.append(b)
    out.append(END)
    return bytes(out)


@dataclass(frozen=True)
class LinkFormat:
    """What one frame looks like on the link: ``n_in`` input elements of ``in_bits`` bits,
    ``lanes_in`` per beat; ``n_out`` output elements of ``out_bits`` bits (``out_signed``),
    ``lanes_out`` per beat."""

    n_in: int
    in_bits: int
    lanes_in: int
    n_out: int
    out_bits: int
    lanes_out: int
    out_signed: bool = False

    @classmethod
    def from_graph(cls, graph) -> LinkFormat:
        first, last = graph.layers[0], graph.layers[-1]
        return cls(first.n_in, first.in_bits, first.lanes_in,
                   last.n_out, last.out_bits, last.lanes_out, bool(last.out_signed))

    in_width = property(lambda self: self.in_bits * self.lanes_in)
    out_width = property(lambda self: self.out_bits * self.lanes_out)
    beats_in = property(lambda self: _beats.beat_count(self.n_in, self.lanes_in))
    beats_out = property(lambda self: _beats.beat_count(self.n_out, self.lanes_out))

    @property
    def request_bytes(self) -> int:
        """Body bytes of a request: tag, input bytes, CRC."""
        return 1 + self.beats_in * nbytes(self.in_width) + 2

    @property
    def reply_bytes(self) -> int:
        """Body bytes of an ``ok`` reply: tag, output bytes, status, CRC."""
        return 2 + self.beats_out * nbytes(self.out_width) + 2

    def request(self, tag: int, codes) -> bytes:
        """The SLIP packet asking for one frame of input integers ``codes`` (``n_in`` of
        them, in the accelerator's input range)."""
        return slip(self.request_body(tag, codes))

    def request_body(self, tag: int, codes) -> bytes:
        """A request's body before SLIP escaping: tag, input bytes, CRC."""
        codes = np.asarray(codes).reshape(1, -1)
        if codes.shape[1] != self.n_in:
            raise ValueError(f"a frame has {self.n_in} input elements, not {codes.shape[1]}")
        body = bytearray([tag & 0xFF])
        width = nbytes(self.in_width)
        for beat in _beats.pack(codes, self.in_bits, self.lanes_in)[0]:
            body += int(beat).to_bytes(width, "little")
        body += checksum(bytes(body))
        return bytes(body)

    def outputs(self, payload: bytes) -> np.ndarray:
        """The ``n_out`` output elements carried by an ``ok`` reply's output bytes."""
        width = nbytes(self.out_width)
        if len(payload) != self.beats_out * width:
            raise ProtocolError(f"an ok reply carries {self.beats_out * width} output bytes, "
                                f"not {len(payload)}")
        beats = [int.from_bytes(payload[k:k + width], "little")
                 for k in range(0, len(payload), width)]
        return _beats.unpack([beats], self.n_out, self.out_bits, self.lanes_out,
                             signed=self.out_signed)[0]


@dataclass(frozen=True)
class Reply:
    """One decoded reply. ``status`` is a name from :data:`~hwgen.hw.host_link.STATUS`, or
    ``"corrupt"`` for a packet that failed the host's own checks (``problem`` says why);
    ``outputs`` only for ``ok``."""

    tag: int | None
    status: str
    outputs: np.ndarray | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class ReplyDecoder:
    """Turns the bytes the board sends into :class:`Reply` objects (feed any chunks)."""

    def __init__(self, fmt: LinkFormat):
        self.fmt = fmt
        self._packet = bytearray()
        self._escaped = False
        self._bad_escape = False

    def feed(self, data: bytes) -> list[Reply]:
        replies = []
        for b in data:
            if b == END:
                if self._packet or self._bad_escape:
                    replies.append(self._decode(bytes(self._packet)))
                self._packet.clear()
                self._escaped = self._bad_escape = False
            elif self._escaped:
                self._escaped = False
                if b in (ESC_END, ESC_ESC):
                    self._packet.append(END if b == ESC_END else ESC)
                else:
                    self._bad_escape = True
                    self._packet.append(b)
            elif b == ESC:
                self._escaped = True
            else:
                self._packet.append(b)
        return replies

    def _decode(self, body: bytes) -> Reply:
        tag = body[0] if body else None
        if self._bad_escape:
            return Reply(tag, "corrupt", problem="invalid SLIP escape")
        if len(body) < 4:
            return Reply(tag, "corrupt", problem=f"{len(body)}-byte reply, too short")
        if checksum(body[:-2]) != body[-2:]:
            return Reply(tag, "corrupt", problem="reply CRC mismatch")
        status = _STATUS_NAMES.get(body[-3])
        if status is None:
            return Reply(tag, "corrupt", problem=f"unknown status {body[-3]}")
        if len(body) not in (4, self.fmt.reply_bytes):
            return Reply(tag, "corrupt", problem=f"{len(body)}-byte reply, expected 4 or "
                                                 f"{self.fmt.reply_bytes}")
        if status != "ok":
            return Reply(tag, status)
        if len(body) != self.fmt.reply_bytes:
            return Reply(tag, "corrupt", problem="ok reply without outputs")
        return Reply(tag, "ok", self.fmt.outputs(body[1:-3]))


@dataclass(frozen=True)
class LinkDescription:
    """Everything a host needs to talk to a build: the frame format, the input quantizer
    (float inputs to the integers the link carries), what the output means (``"class"`` or
    ``"logits"``), the UART's baud rate, and the accelerator's own frames per second."""

    format: LinkFormat
    input_quant: InputQuant
    output: str
    baud: int
    board: str
    clock_mhz: float
    accelerator_fps: float
    protocol: int = PROTOCOL_VERSION

    def to_json(self) -> str:
        data = asdict(self)
        data["input_quant"]["shape"] = list(self.input_quant.shape)
        return json.dumps(data, indent=2) + "\n"

    def write(self, folder) -> Path:
        path = Path(folder) / HOST_LINK_FILE
        path.write_text(self.to_json())
        return path

    @classmethod
    def read(cls, folder) -> LinkDescription:
        path = Path(folder) / HOST_LINK_FILE
        if not path.exists():
            raise ProtocolError(f"{path} does not exist: {folder} is not a finished board "
                                f"build. Build one with `hwgen build MODEL --board BOARD`.")
        try:
            data = json.loads(path.read_text())
            if data.get("protocol") != PROTOCOL_VERSION:
                raise ProtocolError(f"{path} describes host link protocol "
                                    f"{data.get('protocol')}, this hwgen speaks "
                                    f"{PROTOCOL_VERSION}: rebuild with this hwgen.")
            quant = dict(data["input_quant"], shape=tuple(data["input_quant"]["shape"]))
            return cls(**dict(data, format=LinkFormat(**data["format"]),
                              input_quant=InputQuant(**quant)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"{path} is not a valid host link description ({exc}); "
                                f"rebuild the folder with `hwgen build`.") from None
