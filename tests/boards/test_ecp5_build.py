"""ECP5 bitstream builds (ULX3S-85F): nextpnr-ecp5 and ecppack, DP16KD counts, LUT4 figures."""

import json
from pathlib import Path

import numpy as np
import pytest

from hwgen.boards import build as build_mod
from hwgen.boards.build import BuildToolError, bitstream_suffix, bram_cells, build
from hwgen.boards.standin import StandInAccelerator
from hwgen.boards.top import BoardTop
from hwgen.compiler.dataflow import MVAU
from hwgen.compiler.errors import FitError
from hwgen.compiler.memory import plan

ROOT = Path(__file__).resolve().parents[2]
BOARD = "ulx3s-85f"


def standin_top(n_roms):
    # Each 256 x 16 ROM is one DP16KD too.
    return BoardTop(StandInAccelerator(12, 10, 3, n_roms=n_roms, seed=1), 3, 3, BOARD)


@pytest.mark.board
def test_ecp5_bitstream_then_pack_failure_clears_it(tmp_path, monkeypatch):
    out = tmp_path / "standin-ulx3s"
    result = build(standin_top(2), BOARD, out)
    assert result.bitstream == out / "top.bit" and result.bitstream.stat().st_size > 100_000
    assert sorted(p.name for p in out.iterdir()) == \
        ["top.bit", "top.lpf", "top.pnr.json", "top.rpt", "top.tim"]
    assert result.resources["bram"] == 2 and bram_cells(result) == 2
    assert result.synth_cells["DP16KD"] == 2
    assert result.resources["dsp"] == 0 and result.resources["spram"] == 0
    # LUT4s as nextpnr places them (TRELLIS_COMB), at least the netlist's LUT4s and carries.
    cells = result.synth_cells
    assert result.resources["lut"] >= cells["LUT4"] + 2 * cells.get("CCU2C", 0) > 0
    assert result.resources["ff"] == cells["TRELLIS_FF"]
    assert result.totals == {"lut": 83640, "ff": 83640, "bram": 208, "dsp": 156, "spram": 0}
    assert result.clock_mhz == 25.0 and result.fmax_mhz > result.clock_mhz
    assert set(result.wall_s) >= {"synth", "pnr", "pack", "total"}
    assert "nextpnr-ecp5" in result.tool_versions and "yosys" in result.tool_versions
    for path in result.log_paths.values():
        assert path.exists() and path.parent == out

    real = build_mod._tool_command
    monkeypatch.setattr(build_mod, "_tool_command",
                        lambda command: "false" if command == "yowasp-ecppack" else real(command))
    with pytest.raises(BuildToolError, match=r"ecppack \(pack stage\) failed.*full log: "):
        build(standin_top(2), BOARD, out)
    assert not (out / "top.bit").exists()  # the earlier bitstream does not survive a failure
    for pattern in ("*.bit", "*.config", "*.svf"):
        assert not list(out.rglob(pattern))
    assert (out / "failed" / "top.tim").exists()


def test_ecp5_synth_counts_name_lut4s():
    board = build_mod.get_board(BOARD)
    cells = {"LUT4": 80000, "CCU2C": 2000, "TRELLIS_FF": 50000, "DP16KD": 3, "PFUMX": 100,
             "TRELLIS_DPR16X4": 3, "MULT18X18D": 0}
    synth = build_mod._synth_resources("ecp5", cells)
    # Flip-flops sit beside the LUT4s; a carry cell takes two LUT4s, a LUT RAM at least two.
    assert synth["lut"] == 80000 + 2 * 2000 + 2 * 3 and synth["ff"] == 50000
    assert synth["bram"] == 3 and synth["dsp"] == 0 and synth["spram"] == 0
    with pytest.raises(FitError, match=r"at least 84006 LUT4s \(lut 84006/83640\)"):
        build_mod._check_synth_fit(board, synth, None)


def test_ecp5_pnr_overflow_is_a_fit_error():
    board = build_mod.get_board(BOARD)
    log = ("Info: Device utilisation:\n"
           "Info: \t        TRELLIS_COMB:   90000/  83640   107%\n"
           "Info: \t              DP16KD:      12/    208     5%\n")
    with pytest.raises(FitError, match=r"90000 LUT4s \(lut 90000/83640\), 6360 more.*"
                                       r"Layers using LUT4s: fc0 90000"):
        build_mod._check_pnr_fit(board, "ecp5", log, {"fc0": {"lut": 90000}})
    log = "ERROR: Unable to place cell 'x', no BELs remaining to implement cell type 'DP16KD'"
    with pytest.raises(FitError, match=r"at least 209 block RAMs"):
        build_mod._check_pnr_fit(board, "ecp5", log, None)


def test_bitstream_suffix_per_family():
    assert bitstream_suffix("ice40") == ".bin" and bitstream_suffix("ecp5") == ".bit"
    with pytest.raises(BuildToolError, match="gowin"):
        bitstream_suffix("gowin")


@pytest.mark.slow
@pytest.mark.board
def test_tfc_builds_for_ulx3s(tmp_path):
    """TFC-W1A1 to a verified ULX3S-85F bitstream: one place and route at the board's 25 MHz
    oscillator (about 1.5 minutes warm; the digits MLP folds to no block RAM on the 85F and
    takes about 6), the synthesized DP16KD count equal to the memory plan's, LUT4 figures, and
    folding that stops at the 98 cycles per frame its 98 input bytes need over the host link.
    The full-system UART simulation is the iCE40 flow test's."""
    from hwgen.api import BuildOptions
    from hwgen.api import build as hwgen_build

    out = tmp_path / "tfc-ulx3s"
    report = hwgen_build(ROOT / "examples" / "tfc_w1a1_mnist.pt", BuildOptions(
        board="ecp5", out=out, inputs=ROOT / "examples" / "mnist_test_x.npy",
        labels=ROOT / "examples" / "mnist_test_y.npy", clock="board", link_vectors=0))
    assert report["status"] == "passed" and report["board"] == BOARD
    assert report["verification"]["mismatches"] == 0
    assert 96 <= report["cycles_per_frame"] <= 128
    plan = report["memory_plan"]
    assert plan["bram"] > 0
    assert plan["bram_synthesized"] == plan["bram"] == report["resources"]["bram"]["used"]
    assert plan["spram"] == plan["spram_placed"] == 0
    res = report["resources"]
    assert res["lut"]["total"] == 83640 and res["bram"]["total"] == 208
    assert 2000 < res["lut"]["used"] < 0.25 * res["lut"]["total"]
    assert 0 < res["ff"]["used"] < res["ff"]["total"] and res["dsp"]["used"] == 0
    assert report["clock_mhz"] == 25.0 and report["fmax_mhz"] >= 25.0
    bitstream = Path(report["bitstream"])
    assert bitstream == out / "ulx3s-85f.bit" and bitstream.stat().st_size > 100_000
    assert not list(out.rglob("*.bin"))
    expected = json.loads((ROOT / "examples" / "tfc_w1a1_mnist.json").read_text())
    assert report["accuracy"]["golden"] == pytest.approx(expected["test_accuracy"], abs=1e-9)
    saved = json.loads((out / "report.json").read_text())
    assert saved["fmax_mhz"] == report["fmax_mhz"] and saved["status"] == "passed"
    assert np.array_equal(np.load(out / "simulated.npy"), np.load(out / "golden.npy"))

def test_block_rams_yosys_stripped_are_accounted():
    """Yosys removes ROM bit columns that are constant in every word: a 64-bit weight ROM
    (two DP16KD) left with 34 bits takes one, and the build checks the count against that."""
    from hwgen.api import _stripped_block_rams
    from hwgen.compiler.dataflow import Dataflow, InputQuant
    from hwgen.compiler.fold import Budget, lower

    rng = np.random.default_rng(0)
    layers = []
    for name, (n, o) in (("fc0", (64, 64)), ("fc1", (64, 10))):
        w = rng.integers(-7, 8, (o, n))
        layers.append(MVAU(name, w, 4, False, 4, True, 14, 16, True, bias=np.zeros(o)))
    graph = lower(Dataflow("mlp", InputQuant((64,), 4, False, False, 1.0), layers),
                  Budget.from_totals(build_mod.get_board(BOARD).totals, family="ecp5"),
                  {"fc0": {"pe": 2, "simd": 8}, "fc1": {"pe": 2, "simd": 8}})
    k = next(i for i, layer in enumerate(graph.layers) if layer.name == "fc0")
    weights = plan(graph.layers[k])[0]
    assert (weights.width, weights.depth, weights.style, weights.ebr) == (64, 256, "block", 2)
    stripped = {f"top.serial.accelerator.l{k}_fc0.weights": 30,
                f"top.serial.accelerator.l{k}_fc0.input_buffer_x": 3}
    assert _stripped_block_rams(graph, stripped) == [
        {"memory": "fc0.weights", "lanes": 30, "bram": 2, "bram_stripped": 1}]
    assert _stripped_block_rams(graph, {}) == []
