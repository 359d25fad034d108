"""Programming a board with the bitstream of a ``hwgen build`` folder.

The board's amaranth-boards platform knows how it is programmed: its ``toolchain_program``
runs iceprog, openFPGALoader, tinyprog or dfu-util with ``subprocess``. :func:`flash` calls it
too, after checking what would otherwise fail with a less helpful message: the build folder
holds a bitstream of a build that passed, the programmer is installed, and the board's USB
device is attached. :func:`programming_command` finds the exact command without running it
(``hwgen flash --dry-run``) by calling ``toolchain_program`` with ``subprocess.Popen``
replaced by a recorder.

The programmer gets the bitstream in the build folder itself rather than a temporary copy, so
that the command a dry run prints is the command that runs, and works when pasted into a shell.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.build.run import BuildProducts

from ..compiler.errors import HwgenError
from .catalogue import BOARDS, Board, get_board

__all__ = ["FlashError", "FlashPlan", "attached_usb", "check_ready", "find_bitstream", "flash",
           "program", "programming_command"]

#: Where Linux lists USB devices (``<device>/idVendor``, ``<device>/idProduct``).
USB_SYSFS = Path("/sys/bus/usb/devices")

#: Per programmer command: the variable amaranth-boards reads its path from, and how to install
#: it.
PROGRAMMERS = {
    "iceprog": ("ICEPROG", "on Debian/Ubuntu `sudo apt install fpga-icestorm` (it contains "
                           "iceprog); elsewhere build it from "
                           "https://github.com/YosysHQ/icestorm"),
    "openFPGALoader": ("OPENFPGALOADER", "on Debian/Ubuntu `sudo apt install openfpgaloader`; "
                                         "elsewhere see "
                                         "https://trabucayre.github.io/openFPGALoader/"),
    "tinyprog": ("TINYPROG", "`pip install tinyprog` (PyPI)"),
    "dfu-util": ("DFU_UTIL", "on Debian/Ubuntu `sudo apt install dfu-util`; on macOS "
                             "`brew install dfu-util`"),
}
_BUNDLE = ("The OSS CAD Suite (https://github.com/YosysHQ/oss-cad-suite-build) has all of "
           "these programmers.")


class FlashError(HwgenError):
    """The board cannot be programmed: no usable bitstream, no programmer, no board attached,
    or the programmer failed."""


@dataclass
class FlashPlan:
    """What :func:`flash` runs.

    Attributes
    ----------
    board : Board
        The board the bitstream was built for.
    bitstream : Path
        The bitstream file in the build folder.
    argv : list[str]
        The programming command, exactly as the board's platform runs it.
    notes : list[str]
        Things to know before running it (a copy made for the programmer, what to do on the
        board).
    """

    board: Board
    bitstream: Path
    argv: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def command(self) -> str:
        """:attr:`argv` as a shell command line."""
        return shlex.join(self.argv)


def _read_report(build_dir: Path) -> dict | None:
    path = build_dir / "report.json"
    if not path.exists():
        return None
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FlashError(f"cannot read {path}: {exc}. Run `hwgen build` again to rewrite "
                         f"it.") from None
    if not isinstance(report, dict):
        raise FlashError(f"{path} is not a hwgen build report (no JSON object). Run "
                         f"`hwgen build` again to rewrite it.")
    return report


def _check_status(build_dir: Path, report: dict) -> None:
    """A build that did not pass has no bitstream to trust (api.build keeps none)."""
    status = report.get("status")
    if status == "passed":
        return
    if status == "failed":
        raise FlashError(f"the build in {build_dir} failed, so it has no bitstream to flash: "
                         f"{report.get('error') or 'see its report.md'}. Fix that and run "
                         f"`hwgen build` again.")
    raise FlashError(f"the build in {build_dir} did not finish (report.json says status "
                     f"{status!r}): it was interrupted or is still running. Run `hwgen build` "
                     f"again and flash when it has passed.")


def _which_board(build_dir: Path, report: dict | None, board: str | Board | None) -> Board:
    """The board from ``--board``, else the report's, else a ``<board>.bin/.bit`` file name;
    a ``--board`` that contradicts the report is refused (a bitstream runs on one board)."""
    built_for = report.get("board") if report else None
    if board is not None:
        board = get_board(board)
        if built_for and get_board(built_for).name != board.name:
            raise FlashError(f"the build in {build_dir} was made for the {built_for}, not the "
                             f"{board.title} ({board.name}): a bitstream only runs on the "
                             f"board it was built for. Leave out --board, or build for "
                             f"{board.name} with `hwgen build MODEL --board {board.name}`.")
        return board
    if built_for:
        return get_board(built_for)
    named = sorted({p.stem for p in build_dir.glob("*.bi[nt]") if p.stem in BOARDS})
    if len(named) == 1:
        return BOARDS[named[0]]
    raise FlashError(f"cannot tell which board the build in {build_dir} is for: it has no "
                     f"report.json naming it"
                     + (f" and bitstreams for several ({', '.join(named)})" if named else "")
                     + ". Pass --board NAME (`hwgen boards` lists them).")


def _bitstream(build_dir: Path, report: dict | None, board: Board) -> Path:
    """The report's ``bitstream`` (looked up in ``build_dir`` first: the recorded path may be
    relative to where the build ran), else ``<board>.bin`` or ``<board>.bit``."""
    recorded = (report or {}).get("bitstream")
    if recorded:
        recorded = Path(recorded)
        for candidate in (build_dir / recorded.name, recorded):
            if candidate.is_file():
                return candidate
        raise FlashError(f"report.json in {build_dir} names the bitstream {recorded}, but "
                         f"there is no such file in the folder. Run `hwgen build` again.")
    for suffix in (".bin", ".bit"):
        candidate = build_dir / f"{board.name}{suffix}"
        if candidate.is_file():
            return candidate
    raise FlashError(f"no bitstream in {build_dir} (looked for {board.name}.bin and "
                     f"{board.name}.bit). A build with --no-bitstream and `hwgen verify` do "
                     f"not make one: run `hwgen build MODEL --board {board.name}`.")


def find_bitstream(build_dir, board: str | Board | None = None) -> tuple[Board, Path]:
    """The board and the bitstream of the ``hwgen build`` folder ``build_dir``.

    Parameters
    ----------
    build_dir : str or Path
        A folder written by ``hwgen build``.
    board : str or Board, optional
        The board, when report.json does not say (it must agree when it does).

    Raises
    ------
    FlashError
        No such folder, a build that failed or did not finish, no bitstream, or no way to tell
        the board.
    """
    build_dir = Path(build_dir)
    if not build_dir.is_dir():
        raise FlashError(f"no build folder {build_dir}: give the folder `hwgen build` wrote "
                         f"(build/<model>-<board> unless --out said otherwise).")
    report = _read_report(build_dir)
    if report is not None:
        _check_status(build_dir, report)
    board = _which_board(build_dir, report, board)
    return board, _bitstream(build_dir, report, board).resolve()


class _BitstreamProducts(BuildProducts):
    """Build products that hand the programmer the build folder's bitstream in place.

    ``toolchain_program`` asks for ``<name>.bin`` (iCE40) or ``<name>.bit`` (ECP5). When the
    bitstream has another extension, a copy with the asked one is written beside it, since
    openFPGALoader tells file types apart by extension.
    """

    def __init__(self, bitstream: Path):
        self.bitstream = bitstream
        self.notes = []

    def get(self, filename, mode="b"):
        data = self._path(filename).read_bytes()
        return data if mode == "b" else data.decode()

    def _path(self, filename) -> Path:
        suffix = Path(filename).suffix
        if suffix == self.bitstream.suffix:
            return self.bitstream
        if suffix not in (".bin", ".bit"):
            raise FlashError(f"the board's programmer asks for {filename!r}, which `hwgen "
                             f"build` does not write; please report this board.")
        copy = self.bitstream.with_suffix(suffix)
        if not copy.exists() or copy.read_bytes() != self.bitstream.read_bytes():
            shutil.copyfile(self.bitstream, copy)
        self.notes.append(f"{copy.name} is a copy of {self.bitstream.name}: the programmer "
                          f"takes a {suffix} file.")
        return copy

    @contextmanager
    def extract(self, *filenames):
        paths = [str(self._path(name)) for name in filenames]
        yield paths[0] if len(paths) == 1 else paths


class _FinishedProcess:
    """What the recorder returns instead of starting a process: it exited at once with 0."""

    returncode = 0
    pid = 0
    stdin = stdout = stderr = None

    def __init__(self, args):
        self.args = args

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def wait(self, timeout=None):
        return 0

    def poll(self):
        return 0

    def communicate(self, input=None, timeout=None):
        return None, None

    def kill(self):
        pass

    terminate = kill


@contextmanager
def _recording_processes():
    """Replace ``subprocess.Popen`` (which ``check_call``, ``call``, ``run`` and
    ``check_output`` all go through) with a recorder, so nothing runs; yields the list of
    recorded commands."""
    commands = []

    def record(args, *_, **__):
        commands.append(args if isinstance(args, str) else [os.fspath(a) for a in args])
        return _FinishedProcess(args)

    real = subprocess.Popen
    subprocess.Popen = record
    try:
        yield commands
    finally:
        subprocess.Popen = real


def programming_command(build_dir, board: str | Board | None = None) -> FlashPlan:
    """The command that programs the board with the bitstream in ``build_dir``, found by
    running the platform's ``toolchain_program`` with process creation recorded, not run.

    Parameters and errors as :func:`find_bitstream`.
    """
    board, bitstream = find_bitstream(build_dir, board)
    products = _BitstreamProducts(bitstream)
    with _recording_processes() as commands:
        board.platform().toolchain_program(products, bitstream.stem)
    if len(commands) != 1 or isinstance(commands[0], str):
        raise FlashError(f"the {board.title}'s platform ran {commands!r} to program it; hwgen "
                         f"expects one command. Please report this board.")
    notes = [*dict.fromkeys(products.notes)]
    if board.flash_note:
        notes.append(f"{board.title}: {board.flash_note}.")
    return FlashPlan(board, bitstream, commands[0], notes)


def attached_usb(root: Path | None = None) -> set[tuple[int, int]] | None:
    """The (vendor, product) IDs of the attached USB devices, from Linux's sysfs.

    An empty set on a Linux without ``root`` (a container without USB access sees no
    devices); None on other systems, where hwgen cannot tell and leaves it to the programmer.
    """
    root = USB_SYSFS if root is None else Path(root)
    if not root.is_dir():
        return set() if sys.platform.startswith("linux") else None
    found = set()
    for device in root.iterdir():
        try:
            found.add((int((device / "idVendor").read_text(), 16),
                       int((device / "idProduct").read_text(), 16)))
        except (OSError, ValueError):  # interfaces and hubs' ports have no IDs
            continue
    return found


def _devices(board: Board) -> str:
    return " or ".join(str(device) for device in board.usb) or "its programmer"


def _check_tool(plan: FlashPlan) -> None:
    tool = plan.argv[0]
    if shutil.which(tool):
        return
    env, install = PROGRAMMERS.get(Path(tool).name, PROGRAMMERS.get(plan.board.programmer,
                                                                     (None, None)))
    how = f"Install it: {install}. {_BUNDLE}" if install else "Install it."
    other = f" Or set {env} to the path of an installed copy." if env else ""
    raise FlashError(f"{tool} is not installed (it is not on PATH): it programs the "
                     f"{plan.board.title} over USB device {_devices(plan.board)}. {how}{other}")


def _check_attached(plan: FlashPlan, usb_root: Path | None) -> None:
    attached = attached_usb(usb_root)
    if attached is None or not plan.board.usb:
        return
    if any((device.vendor, device.product) in attached for device in plan.board.usb):
        return
    root = USB_SYSFS if usb_root is None else Path(usb_root)
    seen = ("`lsusb` lists what is" if root.is_dir() else
            f"this machine shows no USB devices at all: no {root}, as in a container without "
            f"USB access")
    hint = f" ({plan.board.flash_note})" if plan.board.flash_note else ""
    raise FlashError(f"no {plan.board.title} attached: {plan.argv[0]} needs USB device "
                     f"{_devices(plan.board)}, and none is connected ({seen}). Connect the "
                     f"board by USB{hint} and run `hwgen flash` again.")


def check_ready(plan: FlashPlan, usb_root: Path | None = None) -> None:
    """Check that ``plan`` can run: its programmer is installed and the board's USB device is
    attached (read from ``usb_root``, default :data:`USB_SYSFS`).

    Raises
    ------
    FlashError
        The programmer is missing (names it, how to install it, the USB device it needs), or
        no such USB device is attached.
    """
    _check_tool(plan)
    _check_attached(plan, usb_root)


def program(plan: FlashPlan) -> None:
    """Run ``plan``: the board platform's ``toolchain_program`` with the build's bitstream.

    Raises
    ------
    FlashError
        The programmer failed (its exit code; its own output precedes) or vanished.
    """
    products = _BitstreamProducts(plan.bitstream)
    try:
        plan.board.platform().toolchain_program(products, plan.bitstream.stem)
    except FileNotFoundError:
        _check_tool(plan)  # removed since the check: say so the same way
        raise
    except subprocess.CalledProcessError as exc:
        ids = ", ".join(device.id for device in plan.board.usb)
        raise FlashError(f"{plan.argv[0]} failed with exit code {exc.returncode} programming "
                         f"the {plan.board.title} (command: {plan.command}); its output is "
                         f"above. If it could not open the USB device, your user may lack "
                         f"the permission: add a udev rule for {ids or 'the device'}, or "
                         f"check that no other program holds it.") from None


def flash(build_dir, board: str | Board | None = None, *,
          usb_root: Path | None = None) -> FlashPlan:
    """Program the board with the bitstream in ``build_dir`` through its amaranth-boards
    platform: :func:`programming_command`, :func:`check_ready`, :func:`program`.

    Parameters
    ----------
    build_dir : str or Path
        A folder written by ``hwgen build``.
    board : str or Board, optional
        See :func:`find_bitstream`.
    usb_root : Path, optional
        Where to look for USB devices instead of :data:`USB_SYSFS`.

    Returns
    -------
    FlashPlan
        What ran.

    Raises
    ------
    FlashError
        See :func:`find_bitstream`, :func:`check_ready` and :func:`program`.
    """
    plan = programming_command(build_dir, board)
    check_ready(plan, usb_root)
    program(plan)
    return plan
