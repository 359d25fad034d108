"""Streamlining: thresholds that reproduce the model's own arithmetic, accumulator widths."""

import numpy as np
import pytest
import torch
from torch import nn

from hwgen.compiler import compile_model, streamline
from hwgen.compiler.dataflow import MVAU, LabelSelect, int_range
from hwgen.compiler.errors import QuantizationError
from hwgen.compiler.streamline import acc_range, derive_thresholds
from hwgen.nn import QuantIdentity, QuantLinear, QuantReLU, weight_scale
from hwgen.sim import golden


def random_bn(bn, gen):
    c = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(torch.randn(c, generator=gen) * 0.5)
        bn.weight[0] = 0.0             # constant channel
        bn.weight[1] = -abs(bn.weight[1]) - 0.1  # decreasing channel
        bn.weight[2] = 1e-3            # nearly flat
        bn.bias.copy_(torch.randn(c, generator=gen))
        bn.running_mean.copy_(torch.randn(c, generator=gen) * 4)
        bn.running_var.copy_(torch.rand(c, generator=gen) * 20 + 0.05)


def model(act, seed=0):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = nn.Sequential(QuantIdentity(4, True, 1.0), QuantLinear(16, 12), nn.BatchNorm1d(12),
                        act, QuantLinear(12, 5, bias=True, input_scale=float(act.scale)))
    random_bn(net[2], gen)
    with torch.no_grad():
        net[4].bias.normal_(generator=gen)
    return net.eval()


def weight_ints(lin):
    w = lin.quant_weight().detach().double()
    s = float(weight_scale(lin.weight, 7))
    return torch.round(w / s).long().numpy(), s


ACTS = [lambda: QuantReLU(4, 0.25), lambda: QuantIdentity(3, True, 0.5, narrow=True),
        lambda: QuantIdentity(2, False, 2.0)]


@pytest.mark.parametrize("make_act", ACTS)
@pytest.mark.parametrize("seed", [0, 1])
def test_thresholds_reproduce_chain_on_every_accumulator(export, make_act, seed):
    net = model(make_act(), seed)
    graph = compile_model(export(net, torch.rand(3, 16)))
    layer = graph.layers[0]
    act = net[3]
    w, s_w = weight_ints(net[1])
    xlo, xhi = -8, 7
    lo = np.where(w > 0, w * xlo, w * xhi).sum(1)
    hi = np.where(w > 0, w * xhi, w * xlo).sum(1)
    assert np.array_equal((lo, hi), acc_range(w, xlo, xhi))
    sign = np.where(np.all(layer.weights == w, axis=1), 1, -1)
    assert np.array_equal(layer.weights, w * sign[:, None])
    # Every reachable accumulator of every channel, in the inference layout [N, C].
    n = int((hi - lo).max()) + 1
    acc = np.minimum(lo[None, :] + np.arange(n)[:, None], hi[None, :])
    with torch.no_grad():
        y = act(net[2](torch.from_numpy(acc.astype(np.float32)) * (1.0 * s_w)))
    want = np.rint(y.double().numpy() / float(act.scale)).astype(np.int64)
    t = layer.thresholds
    got = layer.out_base + ((acc * sign)[:, :, None] >= t[None, :, :]).sum(-1)
    assert np.array_equal(got, want)
    assert len(np.unique(want[:, 0])) == 1          # the zero-scale channel is constant
    assert np.all(np.diff(want[:, 1]) <= 0)         # the negative-scale channel decreases
    assert sign[1] == (-1 if len(np.unique(want[:, 1])) > 1 else 1)
    qlo, _ = int_range(act.bits, act.signed, act.narrow)
    assert layer.out_base == qlo and t.shape == (12, 2**act.bits - 1)
    if act.narrow:                               # padding never fires
        assert np.all(t[:, -1] == (np.where(sign > 0, hi, -lo) + 1))


def test_binary_search_matches_scan(export, monkeypatch):
    net = model(QuantReLU(4, 0.25), seed=3)
    path = export(net, torch.rand(3, 16))
    full = compile_model(path)
    monkeypatch.setattr(streamline, "FULL_LIMIT", 16)
    searched = compile_model(path)
    for a, b in zip(full.layers, searched.layers, strict=True):
        assert np.array_equal(a.weights, b.weights)
        if a.thresholds is not None:
            assert np.array_equal(a.thresholds, b.thresholds)


def brute(levels, lo, hi, t, sign, qlo):
    for c in range(len(lo)):
        acc = np.arange(lo[c], hi[c] + 1)
        col = np.zeros((len(acc), len(lo)), dtype=np.int64)
        col[:, c] = acc
        want = levels(col)[:, c]
        got = qlo + ((acc * sign[c])[:, None] >= t[c][None, :]).sum(1)
        assert np.array_equal(got, want), c


@pytest.mark.parametrize("limit", [10**6, 7])
def test_derive_thresholds_directions(monkeypatch, limit):
    monkeypatch.setattr(streamline, "FULL_LIMIT", limit)
    lo, hi = np.array([-20, -5, 0, 3]), np.array([20, 30, 0, 40])

    def levels(acc):
        up = np.clip(np.floor_divide(acc, 3), -3, 3)
        return np.stack([up[:, 0], np.clip(-acc[:, 1] // 4, -3, 3), up[:, 2],
                         np.full(len(acc), 2)], axis=1)
    t, sign = derive_thresholds(levels, lo, hi, -3, 7)
    assert sign.tolist() == [1, -1, 1, 1]
    assert np.all(np.diff(t, axis=1) >= 0)
    brute(levels, lo, hi, t, sign, -3)


def test_non_monotonic_is_refused():
    def levels(acc):
        return np.abs(acc) // 2
    with pytest.raises(QuantizationError, match=r"channel 0.*not monotonic"):
        derive_thresholds(levels, np.array([-10]), np.array([10]), 0, 15, "layer fc0")


def test_accumulator_width_is_tight_and_never_overflows(export):
    net = model(QuantReLU(4, 0.25), seed=2)
    graph = compile_model(export(net, torch.rand(3, 16)))
    x_lo, x_hi = graph.input.stream_range
    for layer, (lo_in, hi_in) in zip(graph.layers, [(x_lo, x_hi), (0, 15)], strict=True):
        w = layer.weights
        worst = np.concatenate([np.where(w > 0, hi_in, lo_in), np.where(w > 0, lo_in, hi_in)])
        acc = golden.accumulate(layer, worst)        # raises on overflow
        m = int(np.abs(acc).max())
        lo, hi = acc_range(w, lo_in, hi_in)
        assert m == max(np.abs(lo).max(), np.abs(hi).max())
        assert layer.acc_bits == m.bit_length() + 1
        assert 2 ** (layer.acc_bits - 2) <= m < 2 ** (layer.acc_bits - 1)
    extremes = np.array([[-8.0] * 16, [7.0] * 16, [-100.0] * 16, [100.0] * 16])
    golden.run_layers(graph, golden.input_quant(graph.input, extremes))


def test_compile_model_outputs(export):
    path = export(model(QuantReLU(4, 0.25)), torch.rand(3, 16))
    graph = compile_model(path)
    assert [type(layer) for layer in graph.layers] == [MVAU, MVAU]
    last = graph.layers[-1]
    assert last.thresholds is None and last.bias is not None
    assert graph.meta["format"] == "torch.export"
    assert graph.meta["logit_scale"] == 0.25 * 2.0 ** np.ceil(np.log2(
        float(model(QuantReLU(4, 0.25))[4].weight.detach().abs().max()) / 7))
    assert graph.layers[0].source.startswith("quant")
    assert all(layer.pe == 1 and layer.simd == 1 for layer in graph.layers)
    labels = compile_model(path, output="label")
    assert isinstance(labels.layers[-1], LabelSelect) and labels.layers[-1].n == 5
    with pytest.raises(ValueError, match="output"):
        compile_model(path, output="probabilities")
