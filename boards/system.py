"""The full-system check: the board design (accelerator, host link, UART, status LED)
simulated from its serial pins, with every reply checked against the golden model.

Requests are encoded and replies decoded by :mod:`hwgen.boards.protocol`, the code ``hwgen
run`` uses on a real board. Besides every test input, the run sends bad requests after the
first good one (a flipped bit, a truncated request, a UART framing error, an over-long
request, junk between packets) and checks that each is answered with its reason and that the
good requests after them are answered correctly.
"""

from __future__ import annotations

import math

import numpy as np

from ..hw.host_link import END, nbytes
from ..hw.top import Accelerator, to_verilog
from ..sim.uart_link import Chunk, simulate_link
from .protocol import LinkFormat, ReplyDecoder, slip
from .top import SerialAccelerator

__all__ = ["BAD_REQUESTS", "check_link", "system_verilog"]

TOP = "hwgen_system"

#: The bad requests sent by :func:`check_link` and the status each must get.
BAD_REQUESTS = {
    "flipped_bit": "bad_crc",
    "truncated": "bad_length",
    "framing_error": "line_error",
    "too_long": "bad_length",
    "junk_between_packets": "bad_length",
}


def system_verilog(graph, divisor: int, clock_hz: float) -> str:
    """Verilog of the :class:`~hwgen.boards.top.SerialAccelerator` for ``graph`` (module
    ``hwgen_system``: ``clk``, ``rst``, ``rx``, ``tx``, ``led``, ``fault``)."""
    acc = Accelerator(graph)
    serial = SerialAccelerator(acc, acc.beats_in, acc.beats_out, divisor, clock_hz)
    return to_verilog(serial, TOP)


def _bad_requests(fmt: LinkFormat, codes, tag: int) -> list[tuple[str, Chunk]]:
    """The bad requests, each made from a good one's body before SLIP escaping (so that the
    damage is exactly the one named, never an escape sequence cut in two)."""
    good = fmt.request(tag, codes)
    body = bytearray(fmt.request_body(tag, codes))
    flipped = bytearray(body)
    flipped[1 + len(flipped) // 3] ^= 0x10  # an input byte
    return [
        ("flipped_bit", Chunk(slip(bytes(flipped)))),
        ("truncated", Chunk(slip(bytes(body[:1 + max(1, nbytes(fmt.in_width))])))),
        ("framing_error", Chunk(good, bad_stop=(len(good) // 2,))),
        ("too_long", Chunk(slip(bytes(body) + b"\x55"))),
        # The host sends END first, so junk forms its own packet.
        ("junk_between_packets", Chunk(bytes([0x13, 0x37, END]))),
    ]


def check_link(graph, codes, expected, *, divisor: int, clock_hz: float,
               bad_requests: bool = True, cache_dir=None) -> dict:
    """Send every row of ``codes`` (accelerator input integers) through the simulated board
    and compare every reply with ``expected`` (the golden model's outputs, ``[frames,
    n_out]``). Returns a JSON-ready summary; ``mismatches`` counts wrong outputs, missing
    replies and bad requests not answered as :data:`BAD_REQUESTS` says; ``cycles_per_reply``
    is the measured distance between replies (the link's throughput when requests come back
    to back)."""
    fmt = LinkFormat.from_graph(graph)
    codes = np.asarray(codes)
    expected = np.asarray(expected).reshape(len(codes), -1)
    chunks, plan = [], []  # plan: (kind, frame or bad-request name, tag)
    # Pace the requests like a host that keeps the line busy but never gets ahead of the
    # replies: a request shorter on the wire than the reply before it waits for the
    # difference (a UART cannot be stalled, and only a few replies can wait).
    reply_bits = 10 * (fmt.reply_bytes * 1.1 + 4)
    bad = _bad_requests(fmt, codes[0], 0xF0) if bad_requests else []
    for k, row in enumerate(codes):
        tag = k & 0xFF
        items = [("good", k, tag, Chunk(fmt.request(tag, row)))]
        if k == 1 or (k == 0 and len(codes) == 1):  # between good ones where possible
            items += [("bad", name, 0x13 if name == "junk_between_packets" else 0xF0, chunk)
                      for name, chunk in bad]
        for kind, what, t, chunk in items:
            gap = max(0, math.ceil(reply_bits - 10 * len(chunk.data)))
            if plan and plan[-1][1] in ("truncated", "junk_between_packets"):
                # The link pads a short frame with zeros while the line waits: a real line
                # gives it a byte time and more; this fast one needs a pause.
                gap += math.ceil(2 * (fmt.beats_in + graph.cycles_per_frame) / divisor)
            chunks.append(Chunk(chunk.data, gap_bits=gap, bad_stop=chunk.bad_stop))
            plan.append((kind, what, t))
    run = simulate_link(system_verilog(graph, divisor, clock_hz), top=TOP, chunks=chunks,
                        divisor=divisor, cache_dir=cache_dir)
    replies = ReplyDecoder(fmt).feed(run.data)

    problems, bad_seen = [], {}
    wrong = 0
    for index, (kind, what, tag) in enumerate(plan):
        reply = replies[index] if index < len(replies) else None
        if reply is None:
            problems.append(f"no reply to {kind} request {what}")
            wrong += 1
            continue
        if reply.tag != tag:
            problems.append(f"reply {index} has tag {reply.tag}, expected {tag} ({what})")
            wrong += 1
        elif kind == "bad":
            bad_seen[what] = reply.status
            if reply.status != BAD_REQUESTS[what]:
                problems.append(f"bad request {what} answered {reply.status}, expected "
                                f"{BAD_REQUESTS[what]}")
                wrong += 1
        elif not reply.ok:
            problems.append(f"frame {what} answered {reply.status} {reply.problem}".strip())
            wrong += 1
        elif not np.array_equal(reply.outputs, expected[what]):
            problems.append(f"frame {what}: outputs {reply.outputs.tolist()}, golden "
                            f"{expected[what].tolist()}")
            wrong += 1
    if len(replies) > len(plan):
        problems.append(f"{len(replies) - len(plan)} replies more than requests")
        wrong += len(replies) - len(plan)
    if run.fault:
        problems.append("the design's fault flag is set")
        wrong += 1
    if any(stop != 1 for _, _, stop in run.received):
        problems.append("a byte on tx had a low stop bit")
        wrong += 1
    # Replies end with an END byte; in steady state they follow the link's own rate.
    finishes = [cycle for cycle, byte, _ in run.received if byte == END][1::2]
    period = ((finishes[-1] - finishes[0]) / (len(finishes) - 1)
              if len(finishes) > 2 else None)
    return {
        "frames": len(codes),
        "requests": len(plan),
        "replies": len(replies),
        "mismatches": wrong,
        "problems": problems[:10],
        "bad_requests": bad_seen,
        "divisor": divisor,
        "simulated_cycles": run.cycles,
        "wall_s": round(run.wall_s, 2),
        "simulator_built": run.built,
        "request_bytes": fmt.request_bytes,
        "reply_bytes": fmt.reply_bytes,
        "request_wire_bytes": round(float(np.mean(
            [len(c.data) for c, (kind, _, _) in zip(chunks, plan, strict=True)
             if kind == "good"])), 2),
        "cycles_per_reply": period,
    }
