"""hwgen.nn binary layers: hwgen::bipolar semantics, gradients, export."""

import pytest
import torch
from torch import nn

from hwgen.nn import BinaryInput, BinaryLinear, SignActivation, bipolar


def test_bipolar_sign_of_zero_is_plus_one():
    x = torch.tensor([-2.0, -1e-30, 0.0, 1e-30, 3.0])
    y = bipolar(x, torch.tensor(0.5), torch.tensor(0.0))
    assert y.tolist() == [-0.5, -0.5, 0.5, 0.5, 0.5]
    assert SignActivation()(torch.tensor([0.0, -0.0])).tolist() == [1.0, 1.0]


def test_binary_input_threshold():
    pixels = torch.tensor([[0.0, 127.0, 127.5, 128.0, 255.0]])
    assert BinaryInput(threshold=128.0)(pixels).tolist() == [[-1, -1, -1, 1, 1]]


def test_straight_through_gradient_window():
    x = torch.tensor([-1.5, -1.0, 0.0, 0.7, 1.0, 2.0], requires_grad=True)
    bipolar(x, torch.tensor(1.0), torch.tensor(0.0)).sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 0]


def test_binary_linear_uses_signs_of_latent_weights():
    torch.manual_seed(0)
    lin = BinaryLinear(6, 3, scale=0.25)
    with torch.no_grad():
        lin.weight[0, 0] = 0.0  # sign(0) = +1
    w = lin.binary_weight()
    assert torch.equal(w, torch.where(lin.weight >= 0, 0.25, -0.25))
    x = torch.randn(4, 6)
    assert torch.equal(lin(x), x @ w.T)
    lin(x).sum().backward()
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0


def test_scales_must_be_powers_of_two():
    with pytest.raises(ValueError, match="power of two"):
        BinaryLinear(3, 2, scale=0.3)
    with pytest.raises(ValueError, match="power of two"):
        SignActivation(scale=3.0)
    with pytest.raises(ValueError, match="finite"):
        BinaryInput(threshold=float("nan"))


def test_opcheck():
    torch.library.opcheck(torch.ops.hwgen.bipolar.default,
                          (torch.randn(5, 3), torch.tensor(1.0), torch.tensor(0.25)))


def test_export_keeps_bipolar(tmp_path):
    net = nn.Sequential(BinaryInput(0.5), BinaryLinear(4, 3), nn.BatchNorm1d(3),
                        SignActivation(), BinaryLinear(3, 2)).eval()
    x = torch.rand(5, 4)
    ep = torch.export.export(net, (x,))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert targets.count("hwgen.bipolar.default") == 4
    torch.export.save(ep, tmp_path / "m.pt2")
    with open(tmp_path / "m.pt2", "rb") as f:
        assert torch.equal(torch.export.load(f).module()(x), net(x))
