"""hwgen.nn: the hwgen::quant op and the quantization-aware layers."""

import math
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwgen.nn import QuantIdentity, QuantLinear, QuantReLU, int_range, quant, weight_scale


def q(x, scale=1.0, bits=4, signed=True, narrow=False, zero_point=0.0):
    return quant(torch.tensor(x, dtype=torch.float32), torch.tensor(scale),
                 torch.tensor(zero_point), bits, signed, narrow)


def test_round_half_even():
    got = q([0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, 0.49, 0.51])
    assert got.tolist() == [0, 2, 2, 4, 0, -2, -2, 0, 1]


def test_clamp_and_narrow():
    assert q([-20, 20], bits=4, signed=True).tolist() == [-8, 7]
    assert q([-20, 20], bits=4, signed=True, narrow=True).tolist() == [-7, 7]
    assert q([-20, 20], bits=4, signed=False).tolist() == [0, 15]
    assert q([-20, 20], bits=4, signed=False, narrow=True).tolist() == [0, 14]
    assert int_range(4, True, True) == (-7, 7)


def test_scale_and_zero_point():
    # (clamp(round(x/s + z)) - z) * s
    assert q([0.3, 0.38, 10.0], scale=0.25, bits=4, signed=False).tolist() == [0.25, 0.5, 3.75]
    assert q([1.0], scale=1.0, bits=4, signed=False, zero_point=3.0).tolist() == [1.0]
    assert q([-5.0], scale=1.0, bits=4, signed=False, zero_point=3.0).tolist() == [-3.0]


def test_ste_gradient_passes_where_not_clamped():
    x = torch.tensor([-9.0, -3.2, 0.0, 6.9, 7.6, 30.0], requires_grad=True)
    y = quant(x, torch.tensor(1.0), torch.tensor(0.0), 4, True, False)
    (y * torch.arange(1.0, 7.0)).sum().backward()
    # round(7.6) = 8 > 7 is clamped; round(-9) = -9 < -8 too.
    assert x.grad.tolist() == [0.0, 2.0, 3.0, 4.0, 0.0, 0.0]


def test_layers_train():
    torch.manual_seed(0)
    net = nn.Sequential(QuantIdentity(4, False, 1.0), QuantLinear(8, 6), nn.BatchNorm1d(6),
                        QuantReLU(4, 0.25), QuantLinear(6, 3, bias=True, input_scale=0.25))
    loss = net(torch.rand(16, 8) * 15).square().sum()
    loss.backward()
    assert net[1].weight.grad.abs().sum() > 0 and net[4].bias.grad.abs().sum() > 0


def test_scales_must_be_powers_of_two():
    with pytest.raises(ValueError, match="power of two"):
        QuantReLU(4, scale=0.3)
    with pytest.raises(ValueError, match="power of two"):
        QuantLinear(4, 4, bias=True, input_scale=0.1)


def test_quant_linear_is_exact():
    """With power-of-two scales the float linear equals the integer accumulator times the
    scales, bit for bit."""
    torch.manual_seed(1)
    lin = QuantLinear(64, 32, bias=True, input_scale=0.25)
    with torch.no_grad():
        lin.bias.normal_()
    xi = torch.randint(0, 16, (50, 64))
    wq = lin.quant_weight().detach()
    s_w = float(weight_scale(lin.weight, 7))
    assert math.frexp(s_w)[0] == 0.5
    wi = torch.round(wq / s_w)
    assert torch.equal(wi * s_w, wq) and wi.abs().max() <= 7
    acc = xi.double() @ wi.double().T
    y = F.linear(xi.float() * 0.25, wq)
    assert torch.equal(y.double(), acc * 0.25 * s_w)
    b = lin.quant_bias().detach()
    assert torch.equal(torch.round(b / (0.25 * s_w)) * (0.25 * s_w), b)


def test_opcheck():
    x = torch.randn(5, 3)
    torch.library.opcheck(torch.ops.hwgen.quant.default,
                          (x, torch.tensor(0.5), torch.tensor(0.0), 4, True, False))


def test_export_save_load_in_fresh_process(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(QuantIdentity(4, False, 1.0), QuantLinear(8, 6), nn.BatchNorm1d(6),
                        QuantReLU(4, 0.25), QuantLinear(6, 3, bias=True, input_scale=0.25))
    net.eval()
    x = torch.rand(4, 8) * 16
    ep = torch.export.export(net, (x,))
    names = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert "hwgen.quant.default" in names
    torch.export.save(ep, tmp_path / "m.pt2")
    torch.save({"x": x, "y": net(x).detach()}, tmp_path / "io.pt")
    code = textwrap.dedent(f"""
        import torch
        import hwgen.nn  # registers hwgen::quant
        ep = torch.export.load({str(tmp_path / "m.pt2")!r})
        io = torch.load({str(tmp_path / "io.pt")!r})
        assert torch.equal(ep.module()(io["x"]), io["y"])
        print("ok")
    """)
    run = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"
