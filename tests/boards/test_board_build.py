"""Bitstream builds with the YoWASP tools, and the fit and tool-failure errors."""

import pytest

from hwgen.boards import build as build_mod
from hwgen.boards.build import BuildToolError, bram_cells, build
from hwgen.boards.standin import StandInAccelerator
from hwgen.boards.top import BoardTop
from hwgen.compiler.errors import FitError


def standin_top(n_roms, board="icebreaker"):
    acc = StandInAccelerator(12, 10, 3, n_roms=n_roms, seed=1)
    return BoardTop(acc, 3, 3, board)


@pytest.mark.board
def test_build_bitstream_then_fit_error_clears_it(tmp_path):
    out = tmp_path / "standin-icebreaker"
    result = build(standin_top(2), "ice40", out)
    assert result.bitstream == out / "top.bin" and result.bitstream.stat().st_size > 100_000
    assert result.resources["lut"] > 0 and result.resources["ff"] > 0
    assert result.resources["bram"] == 2 and bram_cells(result) == 2
    assert result.resources["dsp"] == 0 and result.resources["spram"] == 0
    assert result.totals["bram"] == 30 and result.clock_mhz == 12.0
    assert result.fmax_mhz > result.clock_mhz
    assert set(result.wall_s) >= {"synth", "pnr", "pack", "total"}
    assert "yosys" in result.tool_versions and "nextpnr-ice40" in result.tool_versions
    for path in result.log_paths.values():
        assert path.exists() and path.parent == out
    assert sorted(p.name for p in out.iterdir()) == \
        ["top.bin", "top.pcf", "top.pnr.json", "top.rpt", "top.tim"]

    # 40 ROMs of one EBR each: stopped in Yosys, before block RAMs are mapped.
    usage = {"fc1": {"bram": 24, "lut": 100}, "fc2": {"bram": 16}, "out": {"lut": 5}}
    with pytest.raises(FitError, match=r"bram 40/30\), 10 more") as info:
        build(standin_top(40), "icebreaker", out, usage_by_layer=usage)
    assert "fc1 24, fc2 16" in str(info.value) and "out" not in str(info.value).split(":")[-1]
    assert not (out / "top.bin").exists()  # the earlier bitstream does not survive a failure
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.asc"))
    assert (out / "failed" / "top.rpt").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".build")]


@pytest.mark.board
def test_tool_crash_leaves_no_bitstream(tmp_path, monkeypatch):
    real = build_mod._tool_command
    monkeypatch.setattr(build_mod, "_tool_command",
                        lambda command: "false" if command == "yowasp-icepack" else real(command))
    with pytest.raises(BuildToolError, match=r"icepack \(pack stage\) failed.*full log: "):
        build(standin_top(0), "icebreaker", tmp_path)
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.asc"))
    assert (tmp_path / "failed" / "top.tim").exists()


def test_pnr_overflow_is_a_fit_error():
    board = build_mod.get_board("icebreaker")
    log = ("Info: Device utilisation:\n"
           "Info: \t         ICESTORM_LC:    6001/   5280   113%\n"
           "Info: \t        ICESTORM_RAM:      12/     30    40%\n")
    with pytest.raises(FitError, match=r"lut 6001/5280\), 721 more.*Layers using logic cells: "
                                       r"conv1 4000, fc 2001"):
        build_mod._check_pnr_fit(board, "ice40", log, {"conv1": {"lut": 4000},
                                                        "fc": {"lut": 2001}})
    log = "ERROR: Unable to place cell 'x', no BELs remaining to implement cell type 'ICESTORM_LC'"
    with pytest.raises(FitError, match="at least 5281 logic cells"):
        build_mod._check_pnr_fit(board, "ice40", log, None)
    build_mod._check_pnr_fit(board, "ice40", "ERROR: something else", None)


def test_synth_counts_are_checked():
    board = build_mod.get_board("icebreaker")
    cells = {"SB_LUT4": 5000, "SB_DFFE": 5400, "SB_CARRY": 10, "SB_RAM40_4K": 3}
    synth = build_mod._synth_resources("ice40", cells)
    assert synth["bram"] == 3 and synth["ff"] == 5400 and synth["lut"] == 5400
    with pytest.raises(FitError, match=r"flip-flops \(ff 5400/5280\)"):
        build_mod._check_synth_fit(board, synth, None)
