"""The boards hwgen builds for: name, amaranth-boards platform, device and its resources.

A board belongs to a *family* (``"ice40"``; ``"ecp5"`` later) that decides which YoWASP tools
build it and how their reports are read (see :mod:`hwgen.boards.build`). To add a board, add a
:class:`Board` to :data:`BOARDS` and, for a new family, its tool and cell tables in
:mod:`hwgen.boards.build`.
"""

from dataclasses import dataclass, field

from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from ..compiler.errors import HwgenError

__all__ = ["ALIASES", "BOARDS", "Board", "UnknownBoardError", "get_board"]


class UnknownBoardError(HwgenError, ValueError):
    """The board name is neither a known board nor an alias."""


@dataclass(frozen=True)
class Board:
    """One FPGA board.

    Attributes
    ----------
    name : str
        Canonical board name (``"icebreaker"``).
    title : str
        Human name (``"iCEBreaker"``).
    family : str
        Device family, selects the tools: ``"ice40"``.
    platform_cls : type
        The amaranth-boards platform class; :meth:`platform` makes a fresh instance (a
        platform can be built only once).
    device : str
        Device name as the platform and nextpnr know it (``"iCE40UP5K"``).
    package : str
        Package (``"SG48"``).
    totals : dict[str, int]
        Device resources: ``lut`` (logic cells as the device counts them), ``ff``, ``bram``
        (block RAMs: 4 Kbit EBRs on iCE40), ``dsp``, ``spram``.
    clock_mhz : float
        Frequency the bitstream runs at (the board oscillator, no PLL).
    baud : int
        Host link baud rate over the board's ``uart`` resource.
    has_leds : bool
        Whether the platform has ``led`` resources (one shows ``frame_error``).
    """

    name: str
    title: str
    family: str
    platform_cls: type
    device: str
    package: str
    totals: dict = field(hash=False)
    clock_mhz: float
    baud: int = 115200
    has_leds: bool = True

    def platform(self):
        """A new instance of the board's platform."""
        return self.platform_cls()

    @property
    def clock_hz(self) -> float:
        return self.clock_mhz * 1e6


BOARDS: dict[str, Board] = {
    board.name: board for board in [
        Board(
            name="icebreaker",
            title="iCEBreaker",
            family="ice40",
            platform_cls=ICEBreakerPlatform,
            device="iCE40UP5K",
            package="SG48",
            totals={"lut": 5280, "ff": 5280, "bram": 30, "dsp": 8, "spram": 4},
            clock_mhz=12.0,
            baud=115200,
        ),
        Board(
            name="ulx3s-85f",
            title="ULX3S (85F)",
            family="ecp5",
            platform_cls=ULX3S_85F_Platform,
            device="LFE5U-85F",
            package="BG381",
            totals={"lut": 83640, "ff": 83640, "bram": 208, "dsp": 156, "spram": 0},
            clock_mhz=25.0,
            baud=115200,
        ),
    ]
}

#: Family and convenience names for boards.
ALIASES: dict[str, str] = {
    "ice40": "icebreaker",
    "icebreaker-up5k": "icebreaker",
    "up5k": "icebreaker",
    "ecp5": "ulx3s-85f",
}


def get_board(name: str | Board) -> Board:
    """The :class:`Board` called ``name`` (case-insensitive) or one of its aliases.

    Raises :class:`UnknownBoardError` (a :class:`ValueError`) listing the known names.
    """
    if isinstance(name, Board):
        return name
    if not isinstance(name, str):
        raise TypeError(f"board must be a board name, not {name!r}")
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key in BOARDS:
        return BOARDS[key]
    known = ", ".join(sorted(BOARDS))
    aliases = ", ".join(f"{alias} -> {target}" for alias, target in sorted(ALIASES.items()))
    raise UnknownBoardError(f"Unknown board {name!r}. Known boards: {known} (aliases: "
                            f"{aliases}). Pass one of these names as the board.")
