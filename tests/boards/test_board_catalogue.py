"""Board catalogue: names, aliases, the unknown-board error."""

import pytest
from amaranth_boards.icebreaker import ICEBreakerPlatform

from hwgen.boards.catalogue import BOARDS, Board, UnknownBoardError, get_board
from hwgen.compiler.errors import HwgenError


def test_icebreaker_and_aliases():
    board = get_board("icebreaker")
    assert board.platform_cls is ICEBreakerPlatform
    assert isinstance(board.platform(), ICEBreakerPlatform)
    assert (board.device, board.package, board.family) == ("iCE40UP5K", "SG48", "ice40")
    assert board.totals == {"lut": 5280, "ff": 5280, "bram": 30, "dsp": 8, "spram": 4}
    assert board.clock_mhz == 12.0 and board.baud == 115200
    for alias in ("ice40", "ICE40", " iCEBreaker "):
        assert get_board(alias) is board
    assert get_board(board) is board


def test_unknown_board():
    with pytest.raises(UnknownBoardError) as info:
        get_board("de10nano")
    message = str(info.value)
    assert "'de10nano'" in message and "icebreaker" in message and "ice40" in message
    assert isinstance(info.value, HwgenError) and isinstance(info.value, ValueError)


def test_every_board_is_complete():
    for name, board in BOARDS.items():
        assert isinstance(board, Board) and board.name == name
        assert set(board.totals) >= {"lut", "ff", "bram", "dsp", "spram"}
        assert board.platform().device == board.device
