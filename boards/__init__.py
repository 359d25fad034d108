"""hwgen.boards: board catalogue, board top (host link on the serial pins) and bitstream builds.

The build function stays in its module, so ``hwgen.boards.build`` is the module (a package
attribute named like its submodule would shadow it)::

    from hwgen.boards import BoardTop
    from hwgen.boards.build import build
    result = build(BoardTop(accelerator, beats_in, beats_out, "ice40"), "ice40", "build/x")
"""

from .build import BuildResult, BuildToolError, bram_cells, set_tool_env
from .catalogue import ALIASES, BOARDS, Board, UnknownBoardError, get_board
from .top import BoardTop, SerialAccelerator

__all__ = [
    "ALIASES",
    "BOARDS",
    "Board",
    "BoardTop",
    "BuildResult",
    "BuildToolError",
    "SerialAccelerator",
    "UnknownBoardError",
    "bram_cells",
    "get_board",
    "set_tool_env",
]
