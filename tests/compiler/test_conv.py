"""Convolutional models: front end, streamlining, golden model and PyTorch agree exactly."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hwgen.nn as hn
from hwgen.compiler import compile_model
from hwgen.compiler.dataflow import MVAU, MaxPool, Pad, SlidingWindow
from hwgen.compiler.errors import QuantizationError, UnsupportedOpError
from hwgen.sim import golden, reference


def _randomize_bn(model):
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) * 2 - 1)  # some negative
            m.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)
    return model


def _agree(path, graph, x):
    outs = golden.run_layers(graph, golden.input_quant(graph.input, x))
    ref = reference.reference(path, graph, x)
    return reference.agreement(graph, ref, outs)


def odd_cnn():
    """5x5 kernel, stride 2, padding 1, a (3, 2) kernel, non-square input, 3 and 5
    channels, bias, batch norm with negative scales, a padded max-pool."""
    torch.manual_seed(0)
    return _randomize_bn(nn.Sequential(
        hn.QuantIdentity(3, False, 0.125),
        hn.QuantConv2d(3, 5, 5, stride=2, padding=1, weight_bits=3, bias=True),
        nn.BatchNorm2d(5), hn.QuantReLU(2, 0.5),
        hn.QuantConv2d(5, 4, (3, 2), stride=(1, 2), padding=(1, 0), weight_bits=2,
                       scaling="mean"),
        nn.BatchNorm2d(4), hn.QuantReLU(2, 0.5),
        nn.MaxPool2d(2, padding=1), nn.Flatten(),
        hn.QuantLinear(4 * 3 * 2, 7, weight_bits=4)))


def test_odd_cnn_matches_pytorch_exactly(export):
    model = odd_cnn()
    x = torch.rand(64, 3, 11, 9)
    path = export(model, x[:2])
    graph = compile_model(path)
    kinds = [(type(layer).__name__, layer.name) for layer in graph.layers]
    assert kinds == [("Pad", "conv0_pad"), ("SlidingWindow", "conv0_window"),
                     ("MVAU", "conv0"), ("Pad", "conv1_pad"),
                     ("SlidingWindow", "conv1_window"), ("MVAU", "conv1"),
                     ("Pad", "pool0_pad"), ("SlidingWindow", "pool0_window"),
                     ("MaxPool", "pool0"), ("MVAU", "fc0")]
    conv0 = graph.layer("conv0")
    assert (conv0.pixels, conv0.mw, conv0.mh) == (5 * 4, 25 * 3, 5)  # 13x11 -> 5x4
    assert graph.layer("pool0_pad").value == 0  # -inf pads with the lowest level
    result = _agree(path, graph, x.numpy())
    assert result["hidden_mismatches"] == result["logit_mismatches"] == 0, result


def test_flatten_order_is_pytorchs(export):
    """The first linear layer after a map reads it channel-first, as PyTorch flattens; a
    graph that skipped the reordering disagrees."""
    model = odd_cnn()
    x = torch.rand(32, 3, 11, 9)
    path = export(model, x[:2])
    graph = compile_model(path)
    fc0 = graph.layer("fc0")
    fc0.weights = fc0.weights.reshape(7, 4, 3, 2).transpose(0, 3, 1, 2).reshape(7, -1)
    assert _agree(path, graph, x.numpy())["logit_mismatches"] > 0


def test_sliding_window_matches_unfold():
    layer = SlidingWindow("w", h=7, w=6, c=3, kernel=(3, 2), stride=(2, 3), bits=8,
                          signed=False)
    x = np.random.default_rng(0).integers(0, 256, size=(4, 3, 7, 6))
    mine = golden.sliding_window(layer, x.transpose(0, 2, 3, 1).reshape(4, -1))
    cols = F.unfold(torch.from_numpy(x).double(), (3, 2), stride=(2, 3))  # [N, c*kh*kw, L]
    cols = cols.reshape(4, 3, 3, 2, -1).permute(0, 4, 2, 3, 1)  # [N, L, kh, kw, c]
    assert np.array_equal(mine, cols.reshape(4, -1).numpy().astype(np.int64))
    assert layer.n_out == mine.shape[1]


def binary_cnn(pad_value=1.0):
    torch.manual_seed(2)
    return _randomize_bn(nn.Sequential(
        hn.BinaryInput(threshold=0.5),
        hn.BinaryConv2d(2, 6, 3, padding=1, pad_value=pad_value),
        nn.BatchNorm2d(6), hn.SignActivation(),
        hn.BinaryConv2d(6, 4, 3, stride=2, padding=1, pad_value=-1.0),
        nn.BatchNorm2d(4), hn.SignActivation(),
        nn.MaxPool2d(2), nn.Flatten(),
        hn.BinaryLinear(4 * 2 * 2, 10)))


@pytest.mark.parametrize("pad_value", [1.0, -1.0])
def test_binary_cnn_pads_with_its_bit(export, pad_value):
    model = binary_cnn(pad_value)
    x = torch.rand(64, 2, 8, 9)
    path = export(model, x[:2])
    graph = compile_model(path)
    assert graph.layer("conv0_pad").value == int(pad_value > 0)
    assert graph.layer("conv1_pad").value == 0
    assert graph.layer("conv0").xnor and graph.layer("conv1").xnor
    result = _agree(path, graph, x.numpy())
    assert result["hidden_mismatches"] == result["logit_mismatches"] == 0, result


def test_binary_zero_padding_is_refused(export):
    class ZeroPadded(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = hn.BinaryInput(threshold=0.5)
            self.conv = hn.BinaryConv2d(1, 4, 3)
            self.act = hn.SignActivation()
            self.fc = hn.BinaryLinear(4 * 6 * 6, 3)

        def forward(self, x):
            x = F.conv2d(self.inp(x), self.conv.binary_weight(), padding=1)  # zero padding
            return self.fc(self.act(x).flatten(1))

    path = export(ZeroPadded(), torch.rand(2, 1, 6, 6))
    with pytest.raises(QuantizationError, match="binary stream carries only"):
        compile_model(path)


def test_binary_conv_rejects_zero_pad_value():
    with pytest.raises(ValueError, match="pad_value"):
        hn.BinaryConv2d(1, 2, 3, padding=1, pad_value=0.0)


@pytest.mark.parametrize("make, match", [
    (lambda: nn.Sequential(hn.QuantIdentity(4, False, 1.0),
                           hn.QuantConv2d(1, 2, 3, weight_bits=4), nn.MaxPool2d(2),
                           hn.QuantReLU(2, 0.5), nn.Flatten(), hn.QuantLinear(8, 2)),
     "between layer"),
    (lambda: nn.Sequential(hn.QuantIdentity(4, False, 1.0),
                           hn.QuantConv2d(1, 2, 3, weight_bits=4), hn.QuantReLU(2, 0.5),
                           nn.MaxPool2d(2, ceil_mode=True), nn.Flatten(),
                           hn.QuantLinear(8, 2)), "ceil_mode"),
    (lambda: nn.Sequential(hn.QuantIdentity(4, False, 1.0),
                           hn.QuantConv2d(1, 2, 3, weight_bits=4), hn.QuantReLU(2, 0.5)),
     "linear layer"),
])
def test_unsupported_cnns_get_clear_errors(export, make, match):
    path = export(make(), torch.rand(2, 1, 6, 6))
    with pytest.raises((UnsupportedOpError, QuantizationError), match=match):
        compile_model(path)


def test_grouped_and_dilated_convolutions_are_refused(export):
    class Odd(nn.Module):
        def __init__(self, **kwargs):
            super().__init__()
            self.q = hn.QuantIdentity(4, False, 1.0)
            self.conv = hn.QuantConv2d(2, 2, 3)
            self.kwargs = kwargs
            self.fc = hn.QuantLinear(2 * 2 * 2, 2)

        def forward(self, x):
            y = F.conv2d(self.q(x), self.conv.quant_weight()[:, : 2 // self.kwargs.get(
                "groups", 1)], **self.kwargs)
            return self.fc(hn.quant(y, torch.tensor(1.0), torch.tensor(0.0), 4, True,
                                    False).flatten(1))

    for kwargs, match in (({"groups": 2}, "groups"), ({"dilation": 2}, "dilation")):
        size = 6 if "dilation" in kwargs else 4
        path = export(Odd(**kwargs), torch.rand(2, 2, size, size), f"m{len(match)}.pt2")
        with pytest.raises(UnsupportedOpError, match=match):
            compile_model(path)


def test_per_pixel_constants_are_refused(export):
    class Spatial(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = hn.QuantIdentity(4, False, 1.0)
            self.conv = hn.QuantConv2d(1, 2, 3)
            self.act = hn.QuantReLU(2, 0.5)
            self.register_buffer("offset", torch.rand(1, 2, 4, 4))
            self.fc = hn.QuantLinear(32, 2)

        def forward(self, x):
            return self.fc(self.act(self.conv(self.q(x)) + self.offset).flatten(1))

    path = export(Spatial(), torch.rand(2, 1, 6, 6))
    with pytest.raises(UnsupportedOpError, match="per-channel"):
        compile_model(path)


def test_layer_shapes_chain(export):
    path = export(odd_cnn(), torch.rand(2, 3, 11, 9))
    graph = compile_model(path)
    for a, b in zip(graph.layers, graph.layers[1:], strict=False):
        assert (a.n_out, a.out_bits) == (b.n_in, b.in_bits)
        assert a.pixels_out == b.pixels_in or (a.pixels_out > 1 and b.pixels_in == 1)
    pool = graph.layer("pool0")
    assert isinstance(pool, MaxPool) and pool.window == 4
    assert isinstance(graph.layer("conv1_pad"), Pad)
    assert isinstance(graph.layer("fc0"), MVAU) and graph.layer("fc0").pixels == 1


def _lowered(export, fold=None, budget=None):
    from hwgen.compiler.fold import Budget, lower
    path = export(odd_cnn(), torch.rand(2, 3, 11, 9))
    graph = compile_model(path)
    budget = budget or Budget.from_totals({"lut": 5280, "bram": 30, "spram": 4})
    return graph, lower(graph, budget, fold)


def test_folding_keeps_windows_whole_pixels(export):
    from hwgen.compiler.dataflow import FIFO, flattens
    _, folded = _lowered(export)
    layers = folded.layers
    for i, layer in enumerate(layers):
        if isinstance(layer, SlidingWindow):
            consumer = layers[i + 1] if not isinstance(layers[i + 1], FIFO) else layers[i + 2]
            assert layer.c % layer.lanes == 0 and consumer.lanes_in == layer.lanes
        if isinstance(layer, Pad):
            assert layer.c % layer.lanes == 0
    for a, b in itertools.pairwise(layers):
        assert a.n_out == b.n_in and a.lanes_out == b.lanes_in
        assert a.pixels_out == b.pixels_in or flattens(a, b)


def test_fifo_before_a_pad_holds_what_arrives_during_its_borders(export):
    from hwgen.compiler.dataflow import FIFO, frame_beats
    from hwgen.compiler.fold import pad_stall
    _, folded = _lowered(export)
    period = folded.cycles_per_frame
    names = [layer.name for layer in folded.layers]
    for i, layer in enumerate(folded.layers):
        if isinstance(layer, Pad) and i:
            fifo = folded.layers[i - 1]
            assert isinstance(fifo, FIFO) and fifo.name == f"{layer.name}_fifo"
            beats = frame_beats(layer.n_in, layer.pixels_in, layer.lanes)
            stall = pad_stall(layer, folded.layers[i + 1], period)
            assert stall >= layer.border_run
            assert fifo.depth == max(2, -(-stall * beats // period))
    assert names[0] == "conv0_pad"  # the first layer's pad is fed by the host: no FIFO


def test_folding_file_for_convolutions_and_pools(export):
    from hwgen.compiler.errors import FitError
    from hwgen.compiler.fold import folding_of
    fold = {"conv0": {"pe": 2, "simd": 3}, "pool0": {"lanes": 2}}
    _, folded = _lowered(export, fold)
    assert folded.layer("conv0_window").lanes == folded.layer("conv0_pad").lanes == 3
    assert folded.layer("pool0").lanes == folded.layer("pool0_window").lanes == 2
    again = folding_of(folded)
    assert again["pool0"] == {"lanes": 2} and again["conv0"]["simd"] == 3
    for bad, match in (({"conv0": {"pe": 1, "simd": 2}}, "divide the 3 channels"),
                       ({"pool0": {"lanes": 3}}, "divide the 4 channels"),
                       ({"pool0": {"pe": 2}}, "must look like")):
        with pytest.raises(FitError, match=match):
            _lowered(export, bad)


def test_a_flattened_convolution_keeps_whole_pixels(export):
    """A convolution read flattened by a linear layer gets pe dividing its channels."""
    from hwgen.compiler.errors import FitError
    from hwgen.compiler.fold import Budget, lower
    torch.manual_seed(3)
    model = nn.Sequential(hn.QuantIdentity(4, False, 1.0),
                          hn.QuantConv2d(1, 6, 3, weight_bits=4), hn.QuantReLU(2, 0.5),
                          nn.Flatten(), hn.QuantLinear(6 * 4 * 4, 3))
    graph = compile_model(export(model, torch.rand(2, 1, 6, 6)))
    budget = Budget.from_totals({"lut": 5280, "bram": 30})
    for lut in (1200, 2500, 5000):
        folded = lower(graph, Budget(lut=lut, bram=30))
        assert 6 % folded.layer("conv0").pe == 0
    with pytest.raises(FitError, match="must divide its 6 channels"):
        lower(graph, budget, {"conv0": {"pe": 4, "simd": 1}})


def test_per_feature_ops_after_a_flatten_are_refused(export):
    model = nn.Sequential(hn.QuantIdentity(4, False, 1.0), hn.QuantConv2d(1, 3, 3),
                          nn.Flatten(), nn.BatchNorm1d(3 * 4 * 4), hn.QuantReLU(2, 0.5),
                          hn.QuantLinear(48, 2))
    with pytest.raises(UnsupportedOpError, match="before the flatten"):
        compile_model(export(model, torch.rand(2, 1, 6, 6)))


def test_a_quantizer_after_the_flatten_still_agrees(export):
    """conv -> BN2d -> flatten -> quantizer: PyTorch's hidden values are channel-first."""
    torch.manual_seed(4)
    model = _randomize_bn(nn.Sequential(
        hn.QuantIdentity(4, False, 1.0), hn.QuantConv2d(2, 3, 3), nn.BatchNorm2d(3),
        nn.Flatten(), hn.QuantReLU(2, 0.5), hn.QuantLinear(3 * 3 * 4, 2)))
    x = torch.rand(32, 2, 5, 6) * 15
    path = export(model, x[:2])
    result = _agree(path, compile_model(path), x.numpy())
    assert result["hidden_mismatches"] == result["logit_mismatches"] == 0, result


def test_a_flat_tensor_reshaped_into_a_map_is_refused(export):
    class Reshaped(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = hn.QuantIdentity(4, False, 1.0)
            self.conv = hn.QuantConv2d(1, 2, 3)
            self.act = hn.QuantReLU(2, 0.5)
            self.fc = hn.QuantLinear(2 * 4 * 4, 2)

        def forward(self, x):
            y = self.q(x).view(len(x), 1, 6, 6)
            return self.fc(self.act(self.conv(y)).flatten(1))

    with pytest.raises(UnsupportedOpError, match=r"\[N, C, H, W\]"):
        compile_model(export(Reshaped(), torch.rand(2, 36)))


def test_extreme_vectors_reach_every_first_channels_bounds(export):
    """The verification vectors drive each output channel of a first convolution to the
    largest and smallest accumulator its width is computed from."""
    from hwgen.api import extreme_vectors
    from hwgen.compiler.streamline import acc_range
    graph = compile_model(export(odd_cnn(), torch.rand(2, 3, 11, 9)))
    x = extreme_vectors(graph)
    conv0 = graph.layer("conv0")
    windows = golden.run_layers(graph, graph.input.to_stream(x))[1].reshape(-1, conv0.mw)
    acc = windows @ conv0.weights.T
    lo, hi = acc_range(conv0.weights, *(0, 7))
    assert np.array_equal(acc.max(axis=0), hi) and np.array_equal(acc.min(axis=0), lo)
