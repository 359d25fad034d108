"""Structured pruning: dead and unused neurons leave the graph, outputs stay bit-exact."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from hwgen.compiler import compile_model
from hwgen.compiler.dataflow import MVAU, Dataflow, InputQuant
from hwgen.compiler.prune import remove_dead_neurons, sort_neurons, sparsity_report
from hwgen.nn import QuantIdentity, QuantLinear, QuantReLU
from hwgen.sim import golden, reference

from .layers import mlp, sparse_mlp

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def inputs(graph, rng, n=4000):
    lo, hi = graph.input.stream_range
    x = rng.integers(lo, hi + 1, (n, graph.input.n))
    return np.concatenate([x, np.full((1, graph.input.n), lo), np.full((1, graph.input.n), hi)])


def assert_same_outputs(pruned, dense, rng):
    x = inputs(dense, rng)
    assert np.array_equal(golden.run(pruned, x), golden.run(dense, x))


def test_dead_and_unused_neurons_go_and_outputs_stay_exact():
    rng = np.random.default_rng(1)
    dense = mlp(rng)
    fc0, fc1, fc2 = dense.layers
    fc0.weights[[1, 3, 40]] = 0           # dead: constant outputs, folded into fc1's thresholds
    fc1.weights[:, 5] = 0                 # fc0's neuron 5 is unused
    fc1.weights[2] = 0
    fc1.weights[2, 1] = 3                 # dead once fc0's neuron 1 is gone
    fc1.weights[7] = 0                    # dead: folded into fc2's bias
    fc1.thresholds[7] = np.arange(-7, 8)  # ... with a constant output of 8
    pruned = remove_dead_neurons(dense)

    a, b, c = pruned.layers
    assert a.neurons == [n for n in range(64) if n not in (1, 3, 5, 40)]
    assert b.neurons == [n for n in range(64) if n not in (2, 7)]
    assert (a.mh, b.mw, b.mh, c.mw) == (60, 60, 62, 62)
    assert pruned.meta["removed_neurons"]["fc0"][5] is None      # unused, not constant
    assert pruned.meta["removed_neurons"]["fc1"][7] == 8
    assert c.bias is not None and not np.array_equal(c.bias, fc2.bias)
    report = sparsity_report(pruned)
    assert report[1]["source_shape"] == [64, 64] and report[1]["neurons_removed"] == 2
    assert report[1]["density"] == round(np.count_nonzero(fc1.weights) / fc1.weights.size, 4)
    assert report[2]["inputs_removed"] == 2 and report[2]["scheme"] == "structured + dense"
    assert_same_outputs(pruned, dense, rng)
    assert dense.layers[0].mh == 64  # the input graph is left alone


def test_a_wrong_fold_is_caught():
    """The equality check above can fail: a fold that forgets the constant breaks it."""
    rng = np.random.default_rng(2)
    dense = mlp(rng)
    dense.layers[0].weights[0] = 0
    dense.layers[0].thresholds[0] = np.arange(-7, 8)  # constant output 8
    pruned = remove_dead_neurons(dense)
    assert_same_outputs(pruned, dense, rng)
    pruned.layers[1].thresholds += 1
    with pytest.raises(AssertionError):
        assert_same_outputs(pruned, dense, rng)


def test_a_layer_with_only_dead_neurons_keeps_one_and_the_cascade_goes_on():
    rng = np.random.default_rng(3)
    dense = mlp(rng, sizes=(16, 8, 8, 8, 4))
    dense.layers[1].weights[:] = 0
    pruned = remove_dead_neurons(dense)
    # fc1 keeps one (constant) neuron; fc2 reads nothing else, so its neurons are constants
    # too and leave as well, down to one.
    assert [layer.mh for layer in pruned.layers] == [1, 1, 1, 4]
    assert_same_outputs(pruned, dense, rng)


def test_refuses_a_folded_graph():
    rng = np.random.default_rng(5)
    dense = mlp(rng)
    dense.layers[0].pe = 2
    with pytest.raises(ValueError, match="before folding"):
        remove_dead_neurons(dense)


def test_binary_consumer_folds_the_constant_as_plus_or_minus_one():
    rng = np.random.default_rng(4)
    w = rng.integers(-7, 8, (12, 16))
    w[[0, 4]] = 0
    t = rng.integers(-40, 40, (12, 1))
    t[0], t[4] = 1, 0  # constant bits 0 (-1) and 1 (+1)
    sign = MVAU("fc0", w, 4, False, 4, True, 12, 1, False, thresholds=t, out_bipolar=True)
    wb = rng.choice([-1, 1], (6, 12))
    xnor = MVAU("fc1", wb, 1, False, 1, True, 6, 1, False,
                thresholds=rng.integers(-12, 12, (6, 1)), in_bipolar=True, weight_bipolar=True,
                out_bipolar=True)
    dense = Dataflow("bin", InputQuant((16,), 4, False, False, 1.0), [sign, xnor])
    pruned = remove_dead_neurons(dense)
    assert pruned.layers[1].mw == 10 and pruned.layers[1].xnor
    assert_same_outputs(pruned, dense, rng)


def tiny(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(QuantIdentity(4, False, 1.0), QuantLinear(16, 12), nn.BatchNorm1d(12),
                         QuantReLU(4, 0.25), QuantLinear(12, 5, bias=True, input_scale=0.25))


def export(net, path):
    net.eval()
    with open(path, "wb") as file:
        torch.export.save(torch.export.export(net, (torch.rand(4, 16) * 15,)), file)


@pytest.mark.filterwarnings("ignore:The tensor attribute:UserWarning")  # prune's hook
def test_masks_attached_or_made_permanent(tmp_path):
    attached = tiny()
    prune.l1_unstructured(attached[1], "weight", amount=0.6)
    export(attached, tmp_path / "attached.pt")
    mask = attached[1].weight_mask.bool().numpy()
    graph = compile_model(tmp_path / "attached.pt")
    assert not graph.layers[0].weights[~mask].any()

    permanent = tiny()
    prune.ln_structured(permanent[1], "weight", amount=0.5, n=2, dim=0)
    prune.remove(permanent[1], "weight")
    export(permanent, tmp_path / "permanent.pt")
    graph = compile_model(tmp_path / "permanent.pt")
    assert graph.layers[0].mh == 6 and graph.layers[1].mw == 6
    x = torch.rand(200, 16).numpy() * 17
    ref = reference.reference(tmp_path / "permanent.pt", graph, x)
    layers = golden.run_layers(graph, golden.input_quant(graph.input, x))
    result = reference.agreement(graph, ref, layers)
    assert (result["hidden_mismatches"], result["logit_mismatches"]) == (0, 0)


def test_neurons50_example_agrees_with_pytorch_including_the_removed_constants():
    path = EXAMPLES / "digits_mlp_w4a4_neurons50.pt"
    graph = compile_model(path)
    assert [layer.mh for layer in graph.layers] == [32, 32, 10]
    x = np.load(EXAMPLES / "digits_test_x.npy")
    ref = reference.reference(path, graph, x)
    layers = golden.run_layers(graph, golden.input_quant(graph.input, x))
    assert reference.agreement(graph, ref, layers)["hidden_mismatches"] == 0
    # A wrong constant for a removed neuron is a mismatch.
    removed = graph.meta["removed_neurons"]["fc0"]
    index = next(iter(removed))
    removed[index] += 1
    assert reference.agreement(graph, ref, layers)["hidden_mismatches"] == len(x)


def test_sorting_neurons_by_nonzero_weights_is_exact_and_recorded():
    rng = np.random.default_rng(4)
    dense = remove_dead_neurons(sparse_mlp(rng))
    names = {layer.name for layer in dense.layers}
    ordered = sort_neurons(dense, names)
    for layer in ordered.layers[:-1]:
        counts = np.count_nonzero(layer.weights, axis=1)
        assert (np.diff(counts) <= 0).all()
        assert sorted(layer.neurons) == sorted(
            dense.layers[[m.name for m in dense.layers].index(layer.name)].neurons
            or range(layer.mh))
    assert ordered.layers[-1].neurons == dense.layers[-1].neurons  # the output keeps its order
    assert_same_outputs(ordered, dense, rng)
    # The first hidden stream holds the same values, in the order ``neurons`` records.
    x = inputs(dense, rng, 50)
    mine, theirs = golden.run_layers(ordered, x)[0], golden.run_layers(dense, x)[0]
    source = dense.layers[0].neurons or list(range(dense.layers[0].mh))
    order = [source.index(n) for n in ordered.layers[0].neurons]
    assert order != sorted(order)
    assert np.array_equal(np.asarray(mine).reshape(len(x), -1),
                          np.asarray(theirs).reshape(len(x), -1)[:, order])


def test_pruned75_sorted_agrees_with_pytorch():
    path = EXAMPLES / "digits_mlp_w4a4_pruned75.pt"
    graph = sort_neurons(compile_model(path), {"fc0", "fc1"})
    assert graph.layers[0].neurons != list(range(graph.layers[0].mh))
    x = np.load(EXAMPLES / "digits_test_x.npy")
    ref = reference.reference(path, graph, x)
    layers = golden.run_layers(graph, golden.input_quant(graph.input, x))
    result = reference.agreement(graph, ref, layers)
    assert result["hidden_mismatches"] == result["logit_mismatches"] == 0
    # Order matters: a hidden stream read in the source's order disagrees.
    graph.layers[0].neurons = sorted(graph.layers[0].neurons)
    assert reference.agreement(graph, ref, layers)["hidden_mismatches"] > 0
