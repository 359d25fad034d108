"""`hwgen boards` and `hwgen flash`: the catalogue table, dry runs, and the clear failure
without a programmer or a board (no board is attached to the test machines)."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from hwgen.boards import flash as flash_mod
from hwgen.boards.catalogue import BOARDS
from hwgen.cli import main


def hwgen(*args, env=None):
    return subprocess.run([sys.executable, "-m", "hwgen", *map(str, args)], capture_output=True,
                          text=True, timeout=120, env=env)


def build_folder(tmp_path, board="icebreaker", status="passed"):
    out = tmp_path / f"m-{board}"
    out.mkdir()
    suffix = ".bit" if BOARDS[board].family == "ecp5" else ".bin"
    (out / f"{board}{suffix}").write_bytes(b"bitstream")
    (out / "report.json").write_text(json.dumps({"status": status, "board": board,
                                                 "error": "verification failed: 3 mismatches"}))
    return out


@pytest.fixture
def no_programmers(monkeypatch, tmp_path):
    for var in ("ICEPROG", "TINYPROG", "OPENFPGALOADER", "DFU_UTIL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))


def test_boards_lists_the_catalogue():
    run = hwgen("boards")
    assert run.returncode == 0, run.stderr
    text = run.stdout
    for board in BOARDS.values():
        assert board.name in text and board.device in text and board.programmer in text
        assert "/".join(str(board.totals[k]) for k in ("lut", "ff", "bram", "dsp",
                                                         "spram")) in text
    for words in ("LUT/FF/BRAM/DSP/SPRAM", "115200", "48 MHz", "USB serial", "header pins",
                  "ice40", "ulx3s-85f: ecp5, ulx3s", "orangecrab-25f: orangecrab",
                  "TX on pin 1 (A2), RX on pin 2 (A1)", "docs/boards.md"):
        assert words in text, words


def test_flash_dry_run_prints_the_command(tmp_path):
    out = build_folder(tmp_path, "ulx3s-85f")
    run = hwgen("flash", out, "--dry-run")
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"openFPGALoader -b ulx3s -m {(out / 'ulx3s-85f.bit').resolve()}\n"
    assert "0403:6015 (FTDI FT231X)" in run.stderr and "nothing was run" in run.stderr


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_flash_dry_run_every_board(tmp_path, no_programmers, name):
    out = build_folder(tmp_path, name)
    result = CliRunner().invoke(main, ["flash", str(out), "--dry-run"])
    assert result.exit_code == 0, result.output
    command = result.stdout.strip()
    assert command.startswith(BOARDS[name].programmer + " ")
    assert command.endswith(str(next(out.glob(f"{name}.bi*")).resolve()))


def test_flash_without_programmer(tmp_path, no_programmers):
    out = build_folder(tmp_path)
    result = CliRunner().invoke(main, ["flash", str(out)])
    assert result.exit_code == 2 and not result.stdout
    message = " ".join(result.stderr.split())
    for words in ("error: iceprog is not installed", "fpga-icestorm", "0403:6010 (FTDI FT2232H)"):
        assert words in message, message


def test_flash_without_board(tmp_path, monkeypatch, no_programmers):
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "iceprog").write_text("#!/bin/sh\ntouch ran\n")
    (tools / "iceprog").chmod(0o755)
    monkeypatch.setenv("PATH", str(tools))
    monkeypatch.setattr(flash_mod, "USB_SYSFS", tmp_path / "sysfs")
    (tmp_path / "sysfs").mkdir()
    out = build_folder(tmp_path)
    result = CliRunner().invoke(main, ["flash", str(out)])
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "error: no iCEBreaker attached" in message and "0403:6010 (FTDI FT2232H)" in message
    assert not (tmp_path / "ran").exists() and "Traceback" not in result.output


def test_flash_refuses_failed_build_and_wrong_board(tmp_path):
    out = build_folder(tmp_path, status="failed")
    run = hwgen("flash", out, "--dry-run")
    assert run.returncode == 2 and not run.stdout and "Traceback" not in run.stderr
    assert "failed" in run.stderr and "3 mismatches" in run.stderr
    out = build_folder(tmp_path, "tinyfpga-bx")
    result = CliRunner().invoke(main, ["flash", str(out), "--board", "orangecrab",
                                       "--dry-run"])
    assert result.exit_code == 2 and "made for the tinyfpga-bx" in result.stderr
    result = CliRunner().invoke(main, ["flash", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "no build folder" in result.stderr
