"""The torch.export front end: file kinds, supported ops, clear errors."""

import numpy as np
import pytest
import torch
from torch import nn

from hwgen.compiler import compile_model, ir
from hwgen.compiler.errors import ModelFileError, QuantizationError, UnsupportedOpError
from hwgen.compiler.frontend_torch import load
from hwgen.nn import QuantIdentity, QuantLinear, QuantReLU


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(QuantIdentity(4, False, 1.0), nn.Flatten(), QuantLinear(8, 6),
                         nn.BatchNorm1d(6), QuantReLU(4, 0.25),
                         QuantLinear(6, 3, bias=True, input_scale=0.25))


def test_reads_export_archive_any_suffix(export):
    for name in ("m.pt2", "m.pt", "m.bin"):
        graph = load(export(mlp(), torch.rand(2, 8) * 16, name))
        kinds = [type(n) for n in graph.nodes]
        assert kinds == [ir.Quant, ir.Linear, ir.FloatOp, ir.FloatOp, ir.Quant, ir.Linear,
                         ir.FloatOp]
        assert graph.input_shape == (8,)
        assert graph.nodes[1].weight.dtype == np.int64
        assert np.abs(graph.nodes[1].weight).max() <= 7


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load(tmp_path / "nope.pt2")
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"this is not a model at all")
    with pytest.raises(ModelFileError, match=r"not a torch\.export archive"):
        load(bad)


def test_pickle_is_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save(mlp(), path)
    with pytest.raises(ModelFileError) as info:
        load(path)
    message = str(info.value)
    assert "pickle" in message and "runs arbitrary code" in message
    assert "torch.export.export" in message


def test_pickle_with_explicit_opt_in(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save(mlp().eval(), path)
    graph = compile_model(path, allow_pickle=True)
    assert [layer.name for layer in graph.layers] == ["fc0", "fc1"]


def test_zip_that_is_not_a_model(tmp_path):
    import zipfile
    path = tmp_path / "z.pt2"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(ModelFileError, match="archive_format"):
        load(path)


class Sigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = QuantIdentity(4, False, 1.0)
        self.fc = QuantLinear(8, 4)

    def forward(self, x):
        return torch.sigmoid(self.fc(self.q(x)))


def test_unsupported_op_names_op_and_node(export):
    with pytest.raises(UnsupportedOpError) as info:
        load(export(Sigmoid(), torch.rand(2, 8)))
    assert "aten.sigmoid" in str(info.value) and "node 'sigmoid'" in str(info.value)


def test_float_conv2d_weights(export):
    net = nn.Sequential(QuantIdentity(4, False, 1.0), nn.Conv2d(1, 2, 3))
    with pytest.raises(QuantizationError, match=r"weights of convolution node 'conv2d'.*"
                                                "QuantConv2d"):
        load(export(net, torch.rand(2, 1, 5, 5)))


def test_float_linear_without_quantizer(export):
    net = nn.Sequential(nn.Linear(8, 4, bias=False), QuantReLU(4, 0.25))
    with pytest.raises(QuantizationError, match=r"input of linear node 'linear'.*not quantized"):
        load(export(net, torch.rand(2, 8)))


def test_float_weights(export):
    net = nn.Sequential(QuantIdentity(4, False, 1.0), nn.Linear(8, 4, bias=False))
    with pytest.raises(QuantizationError, match="weights of linear node 'linear'"):
        load(export(net, torch.rand(2, 8)))


def test_nonzero_zero_point(export):
    net = nn.Sequential(QuantIdentity(4, False, 1.0), QuantLinear(8, 4))
    net[0].zero_point.fill_(3.0)
    with pytest.raises(QuantizationError, match=r"zero point 3\.0"):
        load(export(net, torch.rand(2, 8)))


def test_batch_norm_training_mode(tmp_path):
    net = mlp().train()
    ep = torch.export.export(net, (torch.rand(4, 8),))
    torch.export.save(ep, tmp_path / "train.pt2")
    with pytest.raises(QuantizationError, match=r"training mode.*model\.eval\(\)"):
        load(tmp_path / "train.pt2")


def test_float_bias_on_last_layer(export):
    net = nn.Sequential(QuantIdentity(4, False, 1.0), QuantLinear(8, 4, bias=True))
    with torch.no_grad():
        net[1].bias.fill_(0.3)
    with pytest.raises(QuantizationError, match="input_scale"):
        compile_model(export(net, torch.rand(2, 8)))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = QuantIdentity(4, False, 1.0)
        self.fc = QuantLinear(8, 8)

    def forward(self, x):
        x = self.q(x)
        return self.fc(x) + x


def test_branches_unsupported(export):
    with pytest.raises(UnsupportedOpError, match="chains of layers"):
        load(export(Residual(), torch.rand(2, 8)))
