"""Flashing: the command each board's platform runs (found without running it), the build
folder checks, and the messages for a missing programmer, a missing board and a failing
programmer (fake programmers on PATH; no board is attached to the test machines)."""

import json
import subprocess
import sys

import pytest

from hwgen.boards.catalogue import BOARDS, get_board
from hwgen.boards.flash import (
    FlashError,
    attached_usb,
    check_ready,
    find_bitstream,
    flash,
    program,
    programming_command,
)

#: The programming command per programmer; BIT stands for the bitstream's path.
COMMANDS = {
    "iceprog": ["iceprog", "BIT"],
    "tinyprog": ["tinyprog", "-p", "BIT"],
    "openFPGALoader": ["openFPGALoader", "-b", "ulx3s", "-m", "BIT"],
    "dfu-util": ["dfu-util", "-a 0", "-D", "BIT"],
}
ENV_VARS = ("ICEPROG", "TINYPROG", "OPENFPGALOADER", "DFU_UTIL")
REAL_POPEN = subprocess.Popen


@pytest.fixture(autouse=True)
def default_tools(monkeypatch, tmp_path):
    """Programmers under their default names, and fake ones on PATH that leave a trace when
    they run (they must not, unless a test runs them)."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in COMMANDS:
        _fake_tool(bin_dir / tool, 0)
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def _fake_tool(path, exit_code):
    trace = path.parent / "ran.txt"
    path.write_text(f'#!/bin/sh\necho "$0 $*" >> "{trace}"\nexit {exit_code}\n')
    path.chmod(0o755)
    return trace


def make_build(tmp_path, board="icebreaker", *, suffix=None, status="passed", report=True,
               recorded=True, name="build"):
    """A folder laid out like `hwgen build`'s: report.json and the bitstream."""
    board = get_board(board)
    out = tmp_path / name
    out.mkdir()
    suffix = suffix or (".bin" if board.family == "ice40" else ".bit")
    bitstream = out / f"{board.name}{suffix}"
    bitstream.write_bytes(b"\xff\x00bitstream")
    if report:
        data = {"status": status, "board": board.name, "model": "m.pt"}
        if status == "failed":
            data["error"] = "design does not fit: bram 40/30"
        if recorded:  # as api.build records it: relative to where the build ran
            data["bitstream"] = f"build/m-{board.name}/{bitstream.name}"
        (out / "report.json").write_text(json.dumps(data))
    return out, bitstream


def _usb(tmp_path, *ids):
    """A fake /sys/bus/usb/devices with these (vendor, product) devices and an interface."""
    root = tmp_path / "usb"
    (root / "usb1").mkdir(parents=True)
    (root / "1-0:1.0").mkdir()  # an interface: no IDs
    for i, (vendor, product) in enumerate(ids):
        device = root / f"1-{i + 1}"
        device.mkdir()
        (device / "idVendor").write_text(f"{vendor:04x}\n")
        (device / "idProduct").write_text(f"{product:04x}\n")
    (root / "usb1" / "idVendor").write_text("1d6b\n")
    (root / "usb1" / "idProduct").write_text("0002\n")
    return root


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_dry_run_command_for_every_board(tmp_path, default_tools, name):
    board = BOARDS[name]
    out, bitstream = make_build(tmp_path, name)
    plan = programming_command(out)
    expected = [str(bitstream.resolve()) if arg == "BIT" else arg
                for arg in COMMANDS[board.programmer]]
    assert plan.board is board and plan.argv == expected
    assert plan.command.split(" ")[0] == board.programmer and str(bitstream) in plan.command
    assert not (default_tools / "ran.txt").exists()  # nothing ran
    assert sorted(p.name for p in out.iterdir()) == sorted(["report.json", bitstream.name])
    assert subprocess.Popen is REAL_POPEN


def test_dry_run_quotes_and_uses_the_programmer_variable(tmp_path, monkeypatch):
    out, bitstream = make_build(tmp_path, "orangecrab-85f", name="my build")
    monkeypatch.setenv("DFU_UTIL", "/opt/dfu util/dfu-util")
    plan = programming_command(out)
    assert plan.argv[0] == "/opt/dfu util/dfu-util"
    assert plan.command == f"'/opt/dfu util/dfu-util' '-a 0' -D '{bitstream.resolve()}'"
    assert any("hold the button" in note for note in plan.notes)


def test_a_bin_for_a_bit_programmer_gets_a_copy(tmp_path):
    out, bitstream = make_build(tmp_path, "ulx3s", suffix=".bin")
    plan = programming_command(out)
    copy = out / "ulx3s-85f.bit"
    assert plan.argv[-1] == str(copy.resolve()) and copy.read_bytes() == bitstream.read_bytes()
    assert any("copy of ulx3s-85f.bin" in note for note in plan.notes)


def test_board_from_report_option_or_file_name(tmp_path):
    out, bitstream = make_build(tmp_path, "tinyfpga-bx", report=False)
    assert find_bitstream(out) == (get_board("tinyfpga-bx"), bitstream.resolve())
    assert find_bitstream(out, "tinyfpga")[0].name == "tinyfpga-bx"
    (out / "x.bin").write_bytes(b"")
    assert find_bitstream(out)[0].name == "tinyfpga-bx"  # x is no board
    (out / "icestick.bin").write_bytes(b"")
    with pytest.raises(FlashError, match=r"cannot tell which board.*icestick, tinyfpga-bx.*"
                                         r"--board"):
        find_bitstream(out)
    other, _ = make_build(tmp_path, "icebreaker", recorded=False, name="other")
    assert find_bitstream(other, "ice40")[0].name == "icebreaker"
    with pytest.raises(FlashError, match=r"made for the icebreaker, not the ULX3S \(85F\).*"
                                         r"only runs on the board it was built for"):
        find_bitstream(other, "ecp5")


@pytest.mark.parametrize(("status", "words"), [
    ("failed", ["failed", "no bitstream to flash", "bram 40/30", "hwgen build"]),
    ("running", ["did not finish", "'running'"]),
])
def test_unfinished_or_failed_build_is_refused(tmp_path, status, words):
    out, _ = make_build(tmp_path, status=status)
    with pytest.raises(FlashError) as info:
        programming_command(out)
    for word in words:
        assert word in str(info.value)


def test_folder_without_bitstream_or_report(tmp_path):
    with pytest.raises(FlashError, match=r"no build folder .*nowhere.*hwgen build"):
        find_bitstream(tmp_path / "nowhere")
    out, bitstream = make_build(tmp_path, recorded=False)
    bitstream.unlink()  # as after `hwgen build --no-bitstream`
    with pytest.raises(FlashError, match=r"no bitstream in .*icebreaker\.bin and icebreaker"
                                         r"\.bit.*--no-bitstream.*--board icebreaker"):
        find_bitstream(out)
    (out / "report.json").write_text(json.dumps({"status": "passed", "board": "icebreaker",
                                                 "bitstream": "gone/icebreaker.bin"}))
    with pytest.raises(FlashError, match=r"names the bitstream gone/icebreaker\.bin"):
        find_bitstream(out)
    (out / "report.json").write_text("{not json")
    with pytest.raises(FlashError, match=r"cannot read .*report\.json"):
        find_bitstream(out)
    (out / "report.json").unlink()
    with pytest.raises(FlashError, match=r"no report\.json.*Pass --board NAME"):
        find_bitstream(out)


@pytest.mark.parametrize(("name", "words"), [
    ("icebreaker", ["iceprog is not installed", "apt install fpga-icestorm", "ICEPROG",
                    "0403:6010 (FTDI FT2232H)", "iCEBreaker"]),
    ("upduino", ["iceprog", "0403:6014 (FTDI FT232H)"]),
    ("tinyfpga-bx", ["tinyprog is not installed", "pip install tinyprog", "TINYPROG",
                     "1d50:6130 (TinyFPGA bootloader)"]),
    ("ulx3s-45f", ["openFPGALoader is not installed", "apt install openfpgaloader",
                   "OPENFPGALOADER", "0403:6015 (FTDI FT231X)"]),
    ("orangecrab", ["dfu-util is not installed", "apt install dfu-util", "DFU_UTIL",
                    "1209:5af0 (OrangeCrab DFU bootloader)"]),
])
def test_missing_programmer_says_what_to_install(tmp_path, monkeypatch, name, words):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out, _ = make_build(tmp_path, name)
    with pytest.raises(FlashError) as info:
        flash(out, usb_root=_usb(tmp_path))
    message = " ".join(str(info.value).split())
    for word in words:
        assert word in message, message


def test_missing_board_names_the_usb_device(tmp_path, default_tools):
    out, _ = make_build(tmp_path)
    with pytest.raises(FlashError) as info:
        flash(out, usb_root=_usb(tmp_path, (0x0403, 0x6015)))
    message = str(info.value)
    assert "no iCEBreaker attached" in message and "0403:6010 (FTDI FT2232H)" in message
    assert "lsusb" in message and not (default_tools / "ran.txt").exists()
    if sys.platform.startswith("linux"):
        with pytest.raises(FlashError, match=r"no iCEBreaker attached.*no USB devices at all"):
            flash(out, usb_root=tmp_path / "no-sysfs")
    out, _ = make_build(tmp_path, "orangecrab", name="crab")
    with pytest.raises(FlashError, match=r"1209:5af0.*hold the button"):
        flash(out, usb_root=_usb(tmp_path / "crab-usb"))


def test_attached_usb_reads_sysfs(tmp_path):
    root = _usb(tmp_path, (0x0403, 0x6010), (0x1209, 0x5AF0))
    assert attached_usb(root) == {(0x0403, 0x6010), (0x1209, 0x5AF0), (0x1D6B, 0x0002)}


def test_programs_through_the_platform(tmp_path, default_tools):
    out, bitstream = make_build(tmp_path)
    plan = flash(out, usb_root=_usb(tmp_path, (0x0403, 0x6010)))
    trace = (default_tools / "ran.txt").read_text().split()
    assert trace == [str(default_tools / "iceprog"), str(bitstream.resolve())]
    assert plan.argv == ["iceprog", str(bitstream.resolve())]


def test_failing_programmer_gives_its_exit_code(tmp_path, default_tools):
    _fake_tool(default_tools / "tinyprog", 3)
    out, _ = make_build(tmp_path, "tinyfpga-bx")
    plan = programming_command(out)
    check_ready(plan, _usb(tmp_path, (0x1D50, 0x6130)))
    with pytest.raises(FlashError, match=r"tinyprog failed with exit code 3 programming the "
                                         r"TinyFPGA BX \(command: tinyprog -p .*udev rule for "
                                         r"1d50:6130"):
        program(plan)
    assert (default_tools / "ran.txt").exists()


def test_recorder_restores_popen_after_an_error(tmp_path, monkeypatch):
    out, _ = make_build(tmp_path)

    def broken(self, products, name):
        raise RuntimeError("platform bug")

    monkeypatch.setattr(get_board("icebreaker").platform_cls, "toolchain_program", broken)
    with pytest.raises(RuntimeError, match="platform bug"):
        programming_command(out)
    assert subprocess.Popen is REAL_POPEN
