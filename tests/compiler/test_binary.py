"""Binarized networks through the compiler: front end, BatchNorm folding into popcount
thresholds (negative and zero scales), mixed binary/integer layers, agreement with PyTorch."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from hwgen.compiler import compile_model
from hwgen.compiler.dataflow import MVAU
from hwgen.compiler.errors import QuantizationError
from hwgen.compiler.memory import bandwidth_bound
from hwgen.nn import BinaryInput, BinaryLinear, QuantIdentity, QuantLinear, SignActivation
from hwgen.sim import golden, reference


def random_bn(bn, gen, negative=0, zero=1):
    """Random statistics; channel ``negative`` gets a negative scale, ``zero`` a zero one."""
    n = bn.num_features
    w = torch.randn(n, generator=gen)
    w[negative] = -w[negative].abs() - 0.1
    w[zero] = 0.0
    bn.weight.data, bn.bias.data = w, torch.randn(n, generator=gen) * 2
    bn.running_mean.data = torch.randn(n, generator=gen) * 3
    bn.running_var.data = torch.rand(n, generator=gen) * 4 + 0.5


def binary_model(first="binary", seed=0):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if first == "binary":
        layers = [BinaryInput(128.0), BinaryLinear(20, 12)]
    else:  # an 8-bit input and 4-bit weights before the binary layers
        layers = [QuantIdentity(8, False, 1.0), QuantLinear(20, 12, weight_bits=4)]
    layers += [nn.BatchNorm1d(12), SignActivation(),
               BinaryLinear(12, 9), nn.BatchNorm1d(9), SignActivation(),
               QuantLinear(9, 7, weight_bits=3), nn.BatchNorm1d(7), SignActivation(),
               BinaryLinear(7, 5, scale=0.5)]
    net = nn.Sequential(*layers)
    for bn in (m for m in net if isinstance(m, nn.BatchNorm1d)):
        random_bn(bn, gen)
    return net.eval()


@pytest.mark.parametrize("first", ["binary", "integer"])
def test_binary_layers_agree_with_pytorch(export, first):
    net = binary_model(first)
    path = export(net, torch.zeros(4, 20))
    graph = compile_model(path)
    fc = [layer for layer in graph.layers if isinstance(layer, MVAU)]
    assert [layer.xnor for layer in fc] == [first == "binary", True, False, True]
    assert [layer.out_bipolar for layer in fc] == [True, True, True, False]
    assert graph.input.bipolar == (first == "binary")
    x = np.random.default_rng(1).integers(0, 256, (400, 20)).astype(np.float32)
    outs = golden.run_layers(graph, golden.input_quant(graph.input, x))
    result = reference.agreement(graph, reference.reference(path, graph, x), outs)
    assert result["hidden_mismatches"] == 0 and result["logit_mismatches"] == 0
    assert result["argmax_mismatches"] == 0


def test_negative_and_zero_batchnorm_scales(export):
    """A negative BN scale negates the weight row (binary weights stay -1/+1); a zero scale
    makes a constant output, whatever the accumulator."""
    net = binary_model()
    path = export(net, torch.zeros(4, 20))
    fc0 = compile_model(path).layers[0]
    lin = net[1].binary_weight().detach().numpy().astype(np.int64)
    bn = net[2]
    sign = np.where(bn.weight.detach().numpy() < 0, -1, 1)
    assert sign[0] == -1
    np.testing.assert_array_equal(fc0.weights, lin * sign[:, None])
    constant = bool(bn.bias[1] >= 0)  # sign(0 * z + bias)
    t = fc0.thresholds[1, 0]
    assert (t <= -fc0.mw) if constant else (t > fc0.mw)


def test_popcount_thresholds_follow_design_formula():
    """acc >= T  <=>  P >= ceil((T + K) / 2) for every popcount P, K = mw."""
    rng = np.random.default_rng(0)
    k = 13
    t = np.sort(rng.integers(-k - 3, k + 4, (9, 1)), axis=0)
    layer = MVAU("fc", rng.choice([-1, 1], (9, k)), 1, False, 1, True, 5, 1, False,
                 thresholds=t, in_bipolar=True, weight_bipolar=True, out_bipolar=True)
    stored = layer.stored_thresholds[:, 0]
    p = np.arange(k + 1)
    for c in range(9):
        np.testing.assert_array_equal(2 * p - k >= t[c, 0], p >= stored[c])
    assert stored.min() >= 0 and stored.max() <= k + 1


def test_binary_weights_must_be_signs(export):
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = BinaryInput(0.5)
            self.weight = nn.Parameter(torch.randn(3, 4))

        def forward(self, x):
            w = torch.ops.hwgen.bipolar(self.weight, torch.tensor(1.0), torch.tensor(0.3))
            return torch.nn.functional.linear(self.inp(x), w)

    with pytest.raises(QuantizationError, match="sign of the latent weights"):
        compile_model(export(Odd(), torch.zeros(2, 4)))


def test_bandwidth_bound_of_tfc_shape():
    """TFC (784-64-64-64-10) on the UP5K: 59,008 weight bits over 30 block RAMs x 16 bits."""
    rng = np.random.default_rng(0)
    dims = [784, 64, 64, 64, 10]
    layers = [MVAU(f"fc{i}", rng.choice([-1, 1], (o, n)), 1, False, 1, True, 11, 1, False,
                   thresholds=np.zeros((o, 1)), in_bipolar=True, weight_bipolar=True,
                   out_bipolar=True, styles={"weights": "block"})
              for i, (n, o) in enumerate(itertools.pairwise(dims))]
    bound = bandwidth_bound(layers, {"bram": 30})
    assert bound["weight_bits"] == 59008 and bound["bits_per_cycle"] == 480
    assert bound["cycles"] == 123
    layers[-1].styles = {"weights": "logic"}  # a store in logic adds its word width
    assert bandwidth_bound(layers, {"bram": 30})["bits_per_cycle"] == 480 + 1
