"""The QONNX front end: Brevitas-exported models compile into the same integer layers as
PyTorch models, and the golden model agrees exactly with qonnx's own executor on every hidden
activation and logit; bad models get errors that name the node."""

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from models import SHAPES, inputs
from onnx import TensorProto, helper, numpy_helper

from hwgen.compiler import compile_model
from hwgen.compiler.dataflow import MVAU
from hwgen.compiler.errors import ModelFileError, QuantizationError, UnsupportedOpError
from hwgen.compiler.frontend_onnx import read
from hwgen.sim import golden, reference

QONNX = "qonnx.custom_op.general"
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _agreement(path, n=400, name=None):
    graph = compile_model(path)
    x = inputs(name, n) if name else np.random.default_rng(3).normal(
        size=(n, *graph.input.shape)).astype(np.float32) * 4
    layers = golden.run_layers(graph, golden.input_quant(graph.input, x))
    ref = reference.reference(path, graph, x)
    return graph, x, layers, ref, reference.agreement(graph, ref, layers)


@pytest.mark.parametrize("name", ["mlp_w4a4", "binary_mlp", "cnn", "mlp_w4a4@13",
                                  "binary_mlp@13", "cnn@13"])
def test_golden_model_agrees_exactly_with_the_qonnx_executor(exported, name):
    # @13: the same model at opset 13 from the TorchScript exporter.
    graph, x, layers, ref, agreement = _agreement(exported(name), name=name.split("@")[0])
    assert agreement["hidden_mismatches"] == 0, agreement["mismatches"]
    assert agreement["logit_mismatches"] == 0, agreement["mismatches"]
    assert agreement["argmax_mismatches"] == 0
    for i, layer in enumerate(graph.layers):
        if isinstance(layer, MVAU):
            out = np.asarray(layers[i]).reshape(len(x), -1)
            # Integers exactly (no rounding of the reference), and not a degenerate layer.
            assert np.array_equal(ref[layer.name], np.rint(ref[layer.name]))
            assert len(np.unique(out)) > 1, layer.name


def test_the_executor_on_the_unchanged_file_gives_the_golden_logits(exported):
    # The reference changes the batch size to run all vectors at once; the file as exported
    # (batch 1) must give the same logits.
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    path = exported("cnn")
    graph = compile_model(path)
    x = inputs("cnn", 3)
    logits = golden.run_layers(graph, golden.input_quant(graph.input, x))[-1]
    model = ModelWrapper(str(path))
    for v in range(len(x)):
        out = execute_onnx(model, {model.graph.input[0].name: x[v:v + 1]})
        value = out[model.graph.output[0].name].reshape(-1).astype(np.float64)
        assert np.array_equal(value / graph.meta["logit_scale"], logits[v])


def test_a_wrong_weight_makes_the_reference_check_fail(exported):
    path = exported("mlp_w4a4")
    graph = compile_model(path)
    x = inputs("mlp_w4a4", 200)
    graph.layers[0].weights[:, :4] += 2
    layers = golden.run_layers(graph, golden.input_quant(graph.input, x))
    agreement = reference.agreement(graph, reference.reference(path, graph, x), layers)
    assert agreement["hidden_mismatches"] > 0
    assert agreement["first"][0] == "fc0"


def test_the_models_lower_to_the_expected_layers(exported):
    assert [layer.name for layer in compile_model(exported("cnn")).layers] == [
        "conv0_pad", "conv0_window", "conv0", "pool0_window", "pool0", "conv1_window",
        "conv1", "fc0"]
    binary = compile_model(exported("binary_mlp"))
    assert all(layer.in_bipolar and layer.weight_bipolar for layer in binary.layers)
    source = read(exported("mlp_w4a4"))
    assert source.meta["format"] == "qonnx" and source.input_shape == SHAPES["mlp_w4a4"]


def test_default_float_scales_compile_with_a_note_and_still_agree(exported):
    graph, _, _, _, agreement = _agreement(exported("float_default"), name="float_default")
    assert any("not a power of two" in note for note in graph.meta["notes"])
    assert agreement["hidden_mismatches"] == agreement["logit_mismatches"] == 0


def test_per_channel_weight_scales_compile_and_agree(exported):
    graph, _, _, _, agreement = _agreement(exported("per_channel"), name="per_channel")
    assert [layer.name for layer in graph.layers] == ["conv0_window", "conv0", "fc0", "fc1"]
    assert agreement["hidden_mismatches"] == agreement["logit_mismatches"] == 0
    source = read(exported("per_channel"))
    assert len(np.unique(source.nodes[1].weight_scale)) > 1  # the convolution's


def test_per_channel_weight_scales_on_the_logits_are_refused(exported):
    with pytest.raises(QuantizationError, match=r"layer fc0: .* one weight scale per output "
                                                r"channel.*per tensor"):
        compile_model(exported("per_channel_logits"))


# Hand-written QONNX graphs: every supported op, and the errors.

def _const(name, value):
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def _quant(x, out, scale, bits, signed=True, narrow=False, zero=0.0, name=None):
    inits = [_const(f"{out}_s", scale), _const(f"{out}_z", zero), _const(f"{out}_b", bits)]
    node = helper.make_node("Quant", [x, *(i.name for i in inits)], [out], name=name or out,
                            domain=QONNX, signed=int(signed), narrow=int(narrow),
                            rounding_mode="ROUND")
    return [node], inits


def _model(tmp_path, nodes, inits, in_shape, out, opset=13, name="hand"):
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *in_shape])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid(QONNX, 1)])
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _weights(rng, shape, bits=3):
    return rng.integers(-(2 ** (bits - 1)) + 1, 2 ** (bits - 1), size=shape) * 0.125


def _hand_mlp(tmp_path, middle=(), last_scale=0.125, zero=0.0, w0=None):
    """x -> Quant -> MatMul(Quant(W0)) -> middle... -> Relu -> Quant -> Gemm(Quant(W1))."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    for part in (_quant("x", "q0", 0.5, 4, zero=zero),
                 _quant("w0", "w0q", 0.125, 3),
                 _quant("w1", "w1q", last_scale, 3)):
        nodes += part[0]
        inits += part[1]
    inits += [_const("w0", _weights(rng, (16, 12)) if w0 is None else w0),
              _const("w1", _weights(rng, (5, 12)))]
    nodes.append(helper.make_node("MatMul", ["q0", "w0q"], ["mm"], name="matmul0"))
    prev = "mm"
    for i, (op, value) in enumerate(middle):
        extra = []
        if value is not None:
            inits.append(_const(f"c{i}", value))
            extra = [f"c{i}"]
        nodes.append(helper.make_node(op, [prev, *extra], [f"m{i}"], name=f"{op.lower()}{i}"))
        prev = f"m{i}"
    nodes.append(helper.make_node("Relu", [prev], ["r"], name="relu"))
    part = _quant("r", "q1", 0.25, 3, signed=False)
    nodes += part[0]
    inits += part[1]
    nodes.append(helper.make_node("Gemm", ["q1", "w1q"], ["y"], name="gemm1", transB=1))
    return _model(tmp_path, nodes, inits, (16,), "y")


def test_hand_written_graph_with_every_elementwise_op_agrees(tmp_path):
    rng = np.random.default_rng(1)
    middle = [("Mul", rng.uniform(-1.5, 1.5, 12)), ("Add", rng.normal(size=12)),
              ("Sub", 0.3), ("Div", 1.7), ("Identity", None)]
    graph, _, _, _, agreement = _agreement(_hand_mlp(tmp_path, middle))
    assert [layer.name for layer in graph.layers] == ["fc0", "fc1"]
    assert agreement["hidden_mismatches"] == agreement["logit_mismatches"] == 0


def test_hand_written_cnn_with_flatten_and_a_no_op_transpose_agrees(tmp_path):
    rng = np.random.default_rng(2)
    nodes, inits = [], []
    for part in (_quant("x", "q0", 0.5, 4), _quant("w0", "w0q", 0.125, 3),
                 _quant("r", "q1", 0.25, 3, signed=False), _quant("w1", "w1q", 0.125, 3)):
        nodes += part[0]
        inits += part[1]
    inits += [_const("w0", _weights(rng, (4, 2, 3, 3))), _const("b0", rng.normal(size=4)),
              _const("w1", _weights(rng, (36, 5)))]
    nodes += [
        helper.make_node("Conv", ["q0", "w0q", "b0"], ["c"], name="conv", strides=[2, 2],
                         auto_pad="SAME_UPPER"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["q1"], ["p"], name="pool", kernel_shape=[2, 2],
                         pads=[1, 1, 0, 0]),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Transpose", ["f"], ["t"], name="noop", perm=[0, 1]),
        helper.make_node("MatMul", ["t", "w1q"], ["y"], name="matmul1"),
    ]
    graph, _, _, _, agreement = _agreement(_model(tmp_path, nodes, inits, (2, 5, 5), "y"))
    assert [layer.name for layer in graph.layers][-1] == "fc0"
    assert agreement["hidden_mismatches"] == agreement["logit_mismatches"] == 0


def test_an_unsupported_op_is_named_with_its_node_and_place(tmp_path):
    with pytest.raises(UnsupportedOpError,
                       match=r"Sigmoid node 'sigmoid0' \(after MatMul node 'matmul0'\).*"
                             r"op type Sigmoid is not supported"):
        compile_model(_hand_mlp(tmp_path, [("Sigmoid", None)]))


def test_a_branch_is_refused(tmp_path):
    path = _hand_mlp(tmp_path)
    model = onnx.load(str(path))
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.output[0] = "a"
    model.graph.node.append(helper.make_node("Add", ["a", "mm"], ["r"], name="residual"))
    onnx.save(model, str(path))
    with pytest.raises(UnsupportedOpError,
                       match=r"Add node 'residual'.*reads 'a' and 'mm'.*no branches"):
        compile_model(path)


def test_logits_with_a_scale_that_is_not_a_power_of_two_are_refused(tmp_path):
    with pytest.raises(QuantizationError, match=r"layer fc1: scale 0.1.* not a power of two"):
        compile_model(_hand_mlp(tmp_path, last_scale=0.1))


def test_a_zero_point_is_refused(tmp_path):
    with pytest.raises(QuantizationError, match=r"Quant node 'q0'.*zero point"):
        compile_model(_hand_mlp(tmp_path, zero=1.0))


def test_float_weights_are_refused(tmp_path):
    path = _hand_mlp(tmp_path)
    model = onnx.load(str(path))
    mm = next(n for n in model.graph.node if n.op_type == "MatMul")
    mm.input[1] = "w0"
    onnx.save(model, str(path))
    with pytest.raises(QuantizationError, match=r"MatMul node 'matmul0'.*weight 'w0' is not "
                                                 r"quantized"):
        compile_model(path)


def test_files_that_are_not_models_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match=r"does not exist"):
        compile_model(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not a protobuf at all")
    with pytest.raises(ModelFileError, match=r"could not be read as an ONNX model|no ONNX"):
        compile_model(bad)


@pytest.mark.parametrize("dtype", ["UINT3", "INT2", "BIPOLAR"])
def test_multi_threshold_activations_agree(tmp_path, dtype):
    # FINN-style: a MultiThreshold with its own per-channel thresholds as the activation.
    rng = np.random.default_rng(4)
    nodes, inits = [], []
    for part in (_quant("x", "q0", 0.5, 4), _quant("w0", "w0q", 0.125, 3),
                 _quant("w1", "w1q", 0.125, 3)):
        nodes += part[0]
        inits += part[1]
    steps, scale, bias = {"UINT3": (7, 0.25, 0.0), "INT2": (3, 0.5, -1.0),
                          "BIPOLAR": (1, 2.0, -1.0)}[dtype]
    thresholds = np.sort(rng.normal(size=(12, steps)) * 3, axis=1)
    inits += [_const("w0", _weights(rng, (16, 12))), _const("w1", _weights(rng, (5, 12))),
              _const("t", thresholds)]
    nodes += [
        helper.make_node("MatMul", ["q0", "w0q"], ["mm"], name="matmul0"),
        helper.make_node("MultiThreshold", ["mm", "t"], ["a"], name="thresholds", domain=QONNX,
                         out_dtype=dtype, out_scale=scale, out_bias=bias),
        helper.make_node("Gemm", ["a", "w1q"], ["y"], name="gemm1", transB=1),
    ]
    graph, _, layers, _, agreement = _agreement(_model(tmp_path, nodes, inits, (16,), "y"))
    assert agreement["hidden_mismatches"] == agreement["logit_mismatches"] == 0
    assert len(np.unique(layers[0])) == steps + 1
    assert graph.layers[0].out_bipolar == (dtype == "BIPOLAR")


def test_a_multi_threshold_with_an_offset_is_refused(tmp_path):
    path = _hand_mlp(tmp_path)
    model = onnx.load(str(path))
    model.graph.initializer.append(_const("t", np.zeros((1, 3))))
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.CopyFrom(helper.make_node("MultiThreshold", ["mm", "t"], ["r"], name="mt",
                                   domain=QONNX, out_dtype="UINT2", out_bias=1.0))
    onnx.save(model, str(path))
    with pytest.raises(QuantizationError, match=r"MultiThreshold node 'mt'.*out_bias 1.0"):
        compile_model(path)


def test_the_docs_example_exports_compiles_and_agrees(tmp_path, monkeypatch, exported):
    exported("mlp_w4a4")  # brevitas imported (its import warnings silenced) by models.py
    code = (DOCS / "qonnx.md").read_text().split("```python\n")[1].split("```")[0]
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the ONNX exporter's own notices
        exec(compile(code, "docs/qonnx.md", "exec"), {})
    graph, _, _, _, agreement = _agreement(tmp_path / "mlp.onnx")
    assert [layer.name for layer in graph.layers] == ["fc0", "fc1"]
    assert agreement["hidden_mismatches"] == agreement["logit_mismatches"] == 0
