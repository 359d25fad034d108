"""``hwgen run`` against a board emulated on a pseudo-terminal: the client's encoder, decoder,
tag matching, resending and reporting, without a board."""

import os
import pty
import threading
import tty

import numpy as np
import pytest
from click.testing import CliRunner

from hwgen import compiler
from hwgen.boards.catalogue import get_board
from hwgen.boards.host import HostRunError, run
from hwgen.boards.protocol import LinkDescription, LinkFormat, checksum, slip
from hwgen.cli import main
from hwgen.compiler.fold import Budget, lower
from hwgen.hw.host_link import END, ESC, ESC_END, ESC_ESC, STATUS, nbytes
from hwgen.sim import beats, golden

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    graph = lower(compiler.compile_model(os.path.join(EXAMPLES, "digits_mlp_w4a4.pt")),
                  Budget.from_totals(get_board("icebreaker").totals))
    folder = tmp_path_factory.mktemp("digits-build")
    LinkDescription(LinkFormat.from_graph(graph), graph.input, "logits", 115200, "icebreaker",
                    12.0, 75000.0).write(folder)
    x = np.load(os.path.join(EXAMPLES, "digits_test_x.npy"))[:40]
    y = np.load(os.path.join(EXAMPLES, "digits_test_y.npy"))[:40]
    return graph, folder, x, y


class EmulatedBoard:
    """The board's side of the protocol on a pty, answering with the golden model.
    ``misbehave`` maps a request number to what goes wrong with its reply: ``"drop"``,
    ``"corrupt"`` (a flipped reply byte) or a status name."""

    def __init__(self, graph, misbehave=None):
        self.graph = graph
        self.fmt = LinkFormat.from_graph(graph)
        self.misbehave = misbehave or {}
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        self.slave = slave
        self.requests = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.thread.join(2)
        os.close(self.master)
        os.close(self.slave)

    def _packets(self):
        packet, escaped = bytearray(), False
        while not self.stop.is_set():
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            for b in chunk:
                if b == END:
                    if packet:
                        yield bytes(packet)
                    packet.clear()
                elif escaped:
                    packet.append(END if b == ESC_END else ESC if b == ESC_ESC else b)
                    escaped = False
                elif b == ESC:
                    escaped = True
                else:
                    packet.append(b)

    def _serve(self):
        fmt = self.fmt
        width = nbytes(fmt.in_width)
        for body in self._packets():
            number, self.requests = self.requests, self.requests + 1
            tag, payload = body[0], body[1:-2]
            status = "ok" if checksum(body[:-2]) == body[-2:] else "bad_crc"
            trouble = self.misbehave.get(number)
            if trouble == "drop":
                continue
            out = b""
            if status == "ok":
                words = [int.from_bytes(payload[k:k + width], "little")
                         for k in range(0, len(payload), width)]
                codes = beats.unpack([words], fmt.n_in, fmt.in_bits, fmt.lanes_in)
                result = golden.run(self.graph, codes)[0]
                owidth = nbytes(fmt.out_width)
                out = b"".join(int(w).to_bytes(owidth, "little") for w in
                               beats.pack([result], fmt.out_bits, fmt.lanes_out)[0])
            if trouble in STATUS:
                status, out = trouble, b""
            reply = bytes([tag]) + out + bytes([STATUS[status]])
            reply += checksum(reply)
            if trouble == "corrupt":
                reply = reply[:1] + bytes([reply[1] ^ 1]) + reply[2:]
            os.write(self.master, slip(reply))


def test_run_gets_every_output(digits):
    graph, folder, x, _ = digits
    board = EmulatedBoard(graph)
    try:
        result = run(folder, board.port, x, window=2)
    finally:
        board.close()
    expected = golden.run(graph, golden.input_quant(graph.input, x))
    assert np.array_equal(result.outputs, expected)
    assert np.array_equal(result.predicted, np.argmax(expected, axis=1))
    assert result.resent == {} and result.fps > 0


def test_run_resends_after_errors(digits):
    graph, folder, x, _ = digits
    board = EmulatedBoard(graph, {3: "bad_crc", 7: "corrupt", 11: "drop", 12: "line_error"})
    try:
        result = run(folder, board.port, x[:20], window=2, timeout_s=1.0)
    finally:
        board.close()
    expected = golden.run(graph, golden.input_quant(graph.input, x[:20]))
    assert np.array_equal(result.outputs, expected)
    assert result.resent == {"bad_crc": 1, "corrupt": 1, "timeout": 1, "line_error": 1}


def test_run_gives_up_on_a_silent_board(digits):
    graph, folder, x, _ = digits
    board = EmulatedBoard(graph, dict.fromkeys(range(10), "drop"))
    try:
        with pytest.raises(HostRunError, match="no good reply after 1 resends"):
            run(folder, board.port, x[:2], window=1, timeout_s=0.1, retries=1)
    finally:
        board.close()


def test_cli_run(digits, tmp_path):
    graph, folder, x, y = digits
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    board = EmulatedBoard(graph)
    try:
        result = CliRunner().invoke(main, ["run", str(folder), "--port", board.port,
                                           "--input", str(tmp_path / "x.npy"),
                                           "--labels", str(tmp_path / "y.npy"),
                                           "--out", str(tmp_path / "out.npy")])
    finally:
        board.close()
    assert result.exit_code == 0, result.output
    expected = golden.run(graph, golden.input_quant(graph.input, x))
    assert "accuracy: " in result.output and "frames/s over the link at 115200 baud" \
        in result.output
    assert np.array_equal(np.load(tmp_path / "out.npy"), expected)


def test_cli_run_errors(digits, tmp_path):
    _, folder, x, _ = digits
    np.save(tmp_path / "x.npy", x)
    result = CliRunner().invoke(main, ["run", str(tmp_path), "--port", "/dev/null-no",
                                       "--input", str(tmp_path / "x.npy")])
    assert result.exit_code != 0 and "host_link.json does not exist" in result.output
    result = CliRunner().invoke(main, ["run", str(folder), "--port", "/dev/hwgen-no-such-port",
                                       "--input", str(tmp_path / "x.npy")])
    assert result.exit_code != 0 and "cannot open serial port" in result.output
    np.save(tmp_path / "bad.npy", x[:, :10])
    result = CliRunner().invoke(main, ["run", str(folder), "--port", "/dev/null",
                                       "--input", str(tmp_path / "bad.npy")])
    assert result.exit_code != 0 and "must have 64 elements" in result.output
