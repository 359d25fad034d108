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
                                  "binary_mlp@13", "cnn@13", "per_channel@13"])
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


def _quants(*parts):
    """The nodes and initializers of several :func:`_quant` quantizers."""
    nodes, inits = [], []
    for part_nodes, part_inits in parts:
        nodes += part_nodes
        inits += part_inits
    return nodes, inits


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


def _hand_mlp(tmp_path, middle=(), last_scale=0.125, zero=0.0, w0=None, trans_b=1):
    """x -> Quant -> MatMul(Quant(W0)) -> middle... -> Relu -> Quant -> Gemm(Quant(W1))."""
    rng = np.random.default_rng(0)
    nodes, inits = _quants(_quant("x", "q0", 0.5, 4, zero=zero),
                            _quant("w0", "w0q", 0.125, 3),
                            _quant("w1", "w1q", last_scale, 3))
    inits += [_const("w0", _weights(rng, (16, 12)) if w0 is None else w0),
              _const("w1", _weights(rng, (5, 12) if trans_b else (12, 5)))]
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
    nodes.append(helper.make_node("Gemm", ["q1", "w1q"], ["y"], name="gemm1", transB=trans_b))
    return _model(tmp_path, nodes, inits, (16,), "y")


@pytest.mark.parametrize("trans_b", [1, 0])
def test_hand_written_graph_with_every_elementwise_op_agrees(tmp_path, trans_b):
    rng = np.random.default_rng(1)
    middle = [("Mul", rng.uniform(-1.5, 1.5, 12)), ("Add", rng.normal(size=(1, 12))),
              ("Sub", 0.3), ("Div", 1.7), ("Identity", None)]
    graph, _, _, _, agreement = _agreement(_hand_mlp(tmp_path, middle, trans_b=trans_b))
    assert [layer.name for layer in graph.layers] == ["fc0", "fc1"]
    assert agreement["hidden_mismatches"] == agreement["logit_mismatches"] == 0


@pytest.mark.parametrize("padding, features", [
    ({"auto_pad": "SAME_UPPER"}, 36), ({"auto_pad": "SAME_LOWER"}, 36),
    ({"pads": [0, 1, 1, 2]}, 32)])
def test_hand_written_cnn_agrees(tmp_path, padding, features):
    # A 5x6 map (not square), so a swapped height and width cannot go unnoticed.
    rng = np.random.default_rng(2)
    nodes, inits = _quants(_quant("x", "q0", 0.5, 4), _quant("w0", "w0q", 0.125, 3),
                            _quant("r", "q1", 0.25, 3, signed=False),
                            _quant("w1", "w1q", 0.125, 3))
    inits += [_const("w0", _weights(rng, (4, 2, 3, 3))), _const("b0", rng.normal(size=4)),
              _const("w1", _weights(rng, (features, 5)))]
    nodes += [
        helper.make_node("Conv", ["q0", "w0q", "b0"], ["c"], name="conv", strides=[2, 2],
                         **padding),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["q1"], ["p"], name="pool", kernel_shape=[2, 2],
                         pads=[1, 1, 0, 0]),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Transpose", ["f"], ["t"], name="noop", perm=[0, 1]),
        helper.make_node("MatMul", ["t", "w1q"], ["y"], name="matmul1"),
    ]
    graph, _, _, _, agreement = _agreement(_model(tmp_path, nodes, inits, (2, 5, 6), "y"))
    assert [layer.name for layer in graph.layers] == [
        "conv0_pad", "conv0_window", "conv0", "pool0_pad", "pool0_window", "pool0", "fc0"]
    assert agreement["hidden_mismatches"] == agreement["logit_mismatches"] == 0


def _one_pixel_cnn(tmp_path, perm, after=None):
    """A 3x3 convolution of a 3x3 map (one pixel out), then a Transpose by ``perm``, an
    optional op, a Flatten and a MatMul."""
    rng = np.random.default_rng(5)
    nodes, inits = _quants(_quant("x", "q0", 0.5, 4), _quant("w0", "w0q", 0.125, 3),
                            _quant("r", "q1", 0.25, 3, signed=False),
                            _quant("w1", "w1q", 0.125, 3))
    inits += [_const("w0", _weights(rng, (4, 2, 3, 3))), _const("w1", _weights(rng, (4, 5)))]
    nodes += [helper.make_node("Conv", ["q0", "w0q"], ["c"], name="conv"),
              helper.make_node("Transpose", ["c"], ["t"], name="transpose", perm=perm)]
    if after:
        nodes.append(after)
    nodes += [helper.make_node("Relu", [after.output[0] if after else "t"], ["r"],
                               name="relu"),
              helper.make_node("Flatten", ["q1"], ["f"], name="flatten"),
              helper.make_node("MatMul", ["f", "w1q"], ["y"], name="matmul1")]
    return _model(tmp_path, nodes, inits, (2, 3, 3), "y")


def test_a_transpose_of_size_one_axes_agrees(tmp_path):
    # [N, 4, 1, 1] -> [N, 1, 1, 4] (channels last, as FINN writes it): the data does not move.
    graph, _, _, _, agreement = _agreement(_one_pixel_cnn(tmp_path, [0, 2, 3, 1]))
    assert [layer.name for layer in graph.layers] == ["conv0_window", "conv0", "fc0"]
    assert agreement["hidden_mismatches"] == agreement["logit_mismatches"] == 0


@pytest.mark.parametrize("perm, after, match", [
    ([0, 1, 3, 2], None, None),  # swaps two size-1 axes: nothing moves
    ([1, 0, 2, 3], None, r"permutation \[1, 0, 2, 3\] .* moves data"),
    ([0, 2, 3, 1], helper.make_node("MaxPool", ["t"], ["m"], name="pool", kernel_shape=[1, 1]),
     r"MaxPool node 'pool' .* gets \[N, 1, 1, 4\], not the feature map"),
    ([0, 2, 3, 1], helper.make_node("Mul", ["t", "w1"], ["m"], name="scale"),
     r"Mul node 'scale' .* after the feature map \[4, 1, 1\] was flattened \(or transposed\)"),
])
def test_transposes_that_move_data_or_change_the_map_are_refused(tmp_path, perm, after, match):
    path = _one_pixel_cnn(tmp_path, perm, after)
    if match is None:
        compile_model(path)
    else:
        with pytest.raises(UnsupportedOpError, match=match):
            compile_model(path)


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


@pytest.mark.parametrize("dtype, steps, scale, bias", [
    ("UINT3", 7, 0.25, 0.0), ("INT2", 3, 0.5, -1.0), ("INT3", 6, 0.5, -1.5),  # narrow
    ("BIPOLAR", 1, 2.0, -1.0)])
def test_multi_threshold_activations_agree(tmp_path, dtype, steps, scale, bias):
    # FINN-style: a MultiThreshold with its own per-channel thresholds as the activation.
    rng = np.random.default_rng(4)
    nodes, inits = _quants(_quant("x", "q0", 0.5, 4), _quant("w0", "w0q", 0.125, 3),
                            _quant("w1", "w1q", 0.125, 3))
    # Half the channels' thresholds sit on the accumulator grid (acc / 16): there x >= T and
    # x > T differ, and hwgen must take qonnx's >=.
    thresholds = np.sort(rng.normal(size=(12, steps)) * 3, axis=1)
    thresholds[::2] = np.sort(rng.integers(-48, 48, size=(6, steps)), axis=1) / 16
    inits += [_const("w0", _weights(rng, (16, 12))), _const("w1", _weights(rng, (5, 12))),
              _const("t", thresholds)]
    nodes += [
        helper.make_node("MatMul", ["q0", "w0q"], ["mm"], name="matmul0"),
        helper.make_node("MultiThreshold", ["mm", "t"], ["a"], name="thresholds", domain=QONNX,
                         out_dtype=dtype, out_scale=scale, out_bias=bias),
        helper.make_node("Gemm", ["a", "w1q"], ["y"], name="gemm1", transB=1),
    ]
    path = _model(tmp_path, nodes, inits, (16,), "y")
    graph, x, layers, _, agreement = _agreement(path, n=2000)
    assert agreement["hidden_mismatches"] == agreement["logit_mismatches"] == 0
    assert len(np.unique(layers[0])) == steps + 1
    # The ties happen: some inputs put a channel exactly on one of its thresholds.
    acc = golden.input_quant(graph.input, x) @ read(path).nodes[1].weight.T
    assert np.isin(acc[:, ::2] / 16, thresholds[::2]).any()
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


def _set_attr(node, **values):
    for name, value in values.items():
        for a in list(node.attribute):
            if a.name == name:
                node.attribute.remove(a)
        if value is not None:
            node.attribute.append(helper.make_attribute(name, value))


def _edit(path, edit):
    model = onnx.load(str(path))
    edit(model)
    onnx.save(model, str(path))
    return path


def _node(model, op):
    return next(n for n in model.graph.node if n.op_type == op)


def _conv_attr(**values):
    return lambda m: _set_attr(_node(m, "Conv"), **values)


def _second_input(m):
    m.graph.input.append(helper.make_tensor_value_info("x2", TensorProto.FLOAT, [1, 3]))


def _per_channel_act_scale(m):
    scale = next(i for i in m.graph.initializer if i.name == "q0_s")
    scale.CopyFrom(_const("q0_s", np.linspace(0.25, 1, 18).reshape(1, 2, 3, 3)))


REFUSED = [
    (_conv_attr(group=2), UnsupportedOpError, r"Conv node 'conv' .*group 2"),
    (_conv_attr(dilations=[2, 2]), UnsupportedOpError, r"Conv node 'conv' .*dilations \[2, 2\]"),
    (lambda m: _set_attr(_node(m, "Quant"), rounding_mode="FLOOR"), QuantizationError,
     r"Quant node 'q0'.*rounding mode FLOOR"),
    (lambda m: _set_attr(_node(m, "Quant"), signed=None), QuantizationError,
     r"Quant node 'q0'.*no 'signed' attribute"),
    (_per_channel_act_scale, QuantizationError,
     r"Quant node 'q0'.*18 different values \(per channel\)"),
    (lambda m: m.opset_import[0].CopyFrom(helper.make_opsetid("", 11)), ModelFileError,
     r"opset 11; hwgen reads opsets 13 and newer"),
    (_second_input, UnsupportedOpError, r"has 2 inputs \(x, x2\)"),
]


@pytest.mark.parametrize("edit, error, match", REFUSED)
def test_models_hwgen_cannot_map_are_refused_by_name(tmp_path, edit, error, match):
    path = _edit(_one_pixel_cnn(tmp_path, [0, 1, 2, 3]), edit)
    with pytest.raises(error, match=match):
        compile_model(path)


def test_a_ceil_mode_max_pool_and_a_training_batch_norm_are_refused(tmp_path):
    pool = helper.make_node("MaxPool", ["t"], ["m"], name="pool", kernel_shape=[1, 1],
                            ceil_mode=1)
    with pytest.raises(UnsupportedOpError, match=r"MaxPool node 'pool'.*ceil_mode"):
        compile_model(_one_pixel_cnn(tmp_path, [0, 1, 2, 3], pool))
    path = _hand_mlp(tmp_path, [("BatchNormalization", None)])

    def batch_norm(m):
        bn = _node(m, "BatchNormalization")
        for k in ("s", "b", "mean", "var"):
            m.graph.initializer.append(_const(f"bn_{k}", np.ones(12)))
            bn.input.append(f"bn_{k}")
        _set_attr(bn, training_mode=1)
    with pytest.raises(UnsupportedOpError, match=r"BatchNormalization node .*training mode"):
        compile_model(_edit(path, batch_norm))


def test_reshaped_weights_and_a_constant_node_flatten_agree(tmp_path):
    # Weights stored flat and reshaped (a layout op on a quantized constant), and the data's
    # flatten shape from a Constant node: the reference must resize only the data's reshape.
    rng = np.random.default_rng(6)
    nodes, inits = _quants(_quant("x", "q0", 0.5, 4), _quant("w0", "w0q", 0.125, 3))
    inits += [_const("w0", _weights(rng, (60,))),
              numpy_helper.from_array(np.array([5, 12], np.int64), "wshape")]
    shape = numpy_helper.from_array(np.array([1, 12], np.int64), "xshape")
    nodes += [
        helper.make_node("Reshape", ["w0q", "wshape"], ["w"], name="weights"),
        helper.make_node("Constant", [], ["xs"], name="shape", value=shape),
        helper.make_node("Reshape", ["q0", "xs"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w"], ["y"], name="gemm", transB=1),
    ]
    graph, _, _, _, agreement = _agreement(_model(tmp_path, nodes, inits, (3, 2, 2), "y"))
    assert [layer.name for layer in graph.layers] == ["fc0"]
    assert agreement["logit_mismatches"] == 0


def test_float_rounding_ties_are_counted_and_fail_the_build(tmp_path):
    # Input scale 0.1 (not a power of two) and a Mul that brings the step back to 1/32: in
    # exact arithmetic every accumulator 4 (mod 8) lands on a tie of the next quantizer, and
    # the model's float32 products fall on either side of it. hwgen's integers take the exact
    # value; the disagreements are counted and shown, never rounded away.
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    nodes, inits = _quants(_quant("x", "q0", 0.1, 4), _quant("w0", "w0q", 0.125, 3),
                            _quant("r", "q1", 0.25, 4, signed=False),
                            _quant("w1", "w1q", 0.125, 3))
    inits += [_const("w0", _weights(rng, (16, 12))), _const("w1", _weights(rng, (5, 12))),
              _const("k", 0.125 / 0.1 * 2)]
    nodes += [helper.make_node("MatMul", ["q0", "w0q"], ["mm"], name="matmul0"),
              helper.make_node("Mul", ["mm", "k"], ["m"], name="mul"),
              helper.make_node("Relu", ["m"], ["r"], name="relu"),
              helper.make_node("Gemm", ["q1", "w1q"], ["y"], name="gemm1", transB=1)]
    path = _model(tmp_path, nodes, inits, (16,), "y")
    graph, _, _, _, agreement = _agreement(path, n=500)
    assert any("not a power of two" in note for note in graph.meta["notes"])
    assert agreement["hidden_mismatches"] > 0
    layer, _, _, qonnx, mine = agreement["first"]
    assert layer == "fc0" and abs(qonnx - mine) == 1
    run = subprocess.run([sys.executable, "-m", "hwgen", "verify", str(path), "--out",
                          str(tmp_path / "build")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "QONNX and the golden model disagree" in run.stderr
    assert "not all powers of two" in run.stderr
