"""Reference execution of the source model, compared with the golden model.

:func:`reference` runs the exported program itself (its ATen graph, float32), or a QONNX model
in qonnx's own executor (``qonnx.core.onnx_exec.execute_onnx``), and reads, for
each MVAU of the compiled graph, the integers its source node produced: the dequantized output
of the matching quantizer divided by its scale, or the logits divided by the logit scale.
:func:`agreement` counts how these differ from the golden model's layer outputs. This is the
"PyTorch model vs golden" agreement of DESIGN.md, reported apart from "golden vs RTL".
"""

from __future__ import annotations

import numpy as np
import torch
from torch.export.graph_signature import InputKind

from hwgen.compiler.dataflow import MVAU, Dataflow, LabelSelect

__all__ = ["agreement", "reference"]


class _Recorder(torch.fx.Interpreter):
    def __init__(self, module, wanted):
        super().__init__(module)
        self.wanted = set(wanted)
        self.values = {}

    def run_node(self, n):
        out = super().run_node(n)
        if n.name in self.wanted:
            self.values[n.name] = out.detach()
        return out


def _program(path_or_program, allow_pickle=False):
    if isinstance(path_or_program, torch.export.ExportedProgram):
        return path_or_program
    from hwgen.compiler.frontend_torch import load_program
    # A pickle is read only if the graph was compiled from it with allow_pickle (the user
    # opted in for this file).
    return load_program(path_or_program, allow_pickle=allow_pickle)


def _run(ep, x: torch.Tensor, wanted) -> dict:
    args = []
    for spec in ep.graph_signature.input_specs:
        if spec.kind == InputKind.USER_INPUT:
            args.append(x)
        elif spec.target in ep.state_dict:
            args.append(ep.state_dict[spec.target])
        else:
            args.append(ep.constants[spec.target])
    recorder = _Recorder(ep.graph_module, wanted)
    with torch.no_grad():
        recorder.run(*args)
    return recorder.values


def _static_batch(ep) -> int | None:
    """The batch size the program was exported with, or ``None`` if it is dynamic."""
    user = next(n for n in ep.graph.nodes if n.op == "placeholder"
                and n.name in ep.graph_signature.user_inputs)
    size = user.meta["val"].shape[0]
    return int(size) if isinstance(size, int) else None


def _run_in_batches(ep, x: torch.Tensor, wanted, size: int) -> dict:
    parts: dict = {name: [] for name in wanted}
    for start in range(0, len(x), size):
        chunk = x[start:start + size]
        pad = size - len(chunk)
        if pad:
            chunk = torch.cat([chunk, chunk[:1].expand(pad, *chunk.shape[1:])])
        for name, value in _run(ep, chunk, wanted).items():
            parts[name].append(value[:size - pad])
    return {name: torch.cat(chunks) for name, chunks in parts.items() if chunks}


def _run_qonnx(path, x: np.ndarray, wanted, meta: dict) -> dict:
    """Run the QONNX model at ``path`` in qonnx's executor on the batch ``x`` and return the
    tensors the ``wanted`` source nodes wrote (``meta["tensors"]`` names them)."""
    try:
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx
        from qonnx.transformation.general import SortGraph
        from qonnx.transformation.infer_shapes import InferShapes
    except ImportError:
        from hwgen.compiler.errors import ModelFileError
        raise ModelFileError("checking a QONNX model against its own execution needs qonnx: "
                             "pip install 'hwgen[onnx]'.") from None
    model = ModelWrapper(str(path))
    # Exports fix the batch size (often 1): set it to the batch (Reshape constants included,
    # as qonnx's ChangeBatchSize does) and infer the other shapes again.
    from onnx import numpy_helper

    graph, name = model.graph, meta["input_tensor"]
    next(i for i in graph.input if i.name == name).type.tensor_type.shape.dim[0].dim_value = \
        len(x)
    graph.output[0].type.tensor_type.ClearField("shape")
    del graph.value_info[:]
    chain = {name, *meta["tensors"].values()}
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    for node in graph.node:
        # Only reshapes of the data carry the batch size (not those of weights).
        if node.op_type != "Reshape" or node.input[0] not in chain:
            continue
        shape = model.get_initializer(node.input[1])
        if shape is None and node.input[1] in constants:
            value = next(a for a in constants[node.input[1]].attribute if a.name == "value")
            shape = numpy_helper.to_array(value.t).copy()
            if shape[0] not in (0, -1):
                shape[0] = len(x)
                value.t.CopyFrom(numpy_helper.from_array(shape, value.t.name))
        elif shape is not None and shape[0] not in (0, -1):
            shape = shape.copy()
            shape[0] = len(x)
            model.set_initializer(node.input[1], shape)
    # Sorted as the front end reads it: the executor runs nodes in file order.
    model = model.transform(SortGraph()).transform(InferShapes())
    context = execute_onnx(model, {name: x}, return_full_exec_context=True)
    return {n: torch.from_numpy(np.asarray(context[meta["tensors"][n]])) for n in wanted}


def reference(path_or_exported_program, graph: Dataflow, x_float) -> dict[str, np.ndarray]:
    """Run the source model on float inputs ``x_float`` (``[N, ...]``) and return, per MVAU
    layer name, the integers ``[N, mh]`` its source node produced.

    Hidden layers: the matching quantizer's output divided by its scale; the last layer: the
    output divided by ``graph.meta["logit_scale"]``. The quotients are returned as float64,
    not rounded: with power-of-two scales they are exact integers, and anything else must show
    up as a mismatch rather than be rounded into agreement."""
    x = torch.as_tensor(np.asarray(x_float, dtype=np.float32))
    x = x.reshape(len(x), *graph.input.shape)
    layers = [layer for layer in graph.layers if isinstance(layer, MVAU)]
    wanted = [layer.source for layer in layers]
    if graph.meta.get("format") == "qonnx":
        values = _run_qonnx(path_or_exported_program, x.numpy(), wanted, graph.meta)
        return _integers(graph, layers, values, len(x))
    ep = _program(path_or_exported_program,
                  allow_pickle=graph.meta.get("source_kind") == "pickle")
    batch = _static_batch(ep)
    if batch is None or batch == len(x):
        values = _run(ep, x, wanted)
    else:
        # The export baked its batch size in (no dynamic batch dimension): run batches of
        # that size, padding the last one.
        values = _run_in_batches(ep, x, wanted, batch)
    return _integers(graph, layers, values, len(x))


def _integers(graph: Dataflow, layers, values: dict, n: int) -> dict[str, np.ndarray]:
    scales = graph.meta.get("layer_scales", {})
    out = {}
    for layer in layers:
        if layer.source not in values:
            raise KeyError(f"{layer.name}: source node '{layer.source}' is not in the program")
        scale = scales.get(layer.name, graph.meta.get("logit_scale", 1.0))
        value = values[layer.source].to(torch.float64)
        if layer.pixels > 1:
            # A feature map, [N, C, H, W] or flattened channel-first: the stream has it
            # channels-last.
            value = value.reshape(n, -1, layer.pixels).transpose(1, 2)
        value = value.numpy().reshape(n, -1)
        out[layer.name] = value / scale
    return out


def agreement(graph: Dataflow, ref: dict, golden_layer_outputs, *, show: int = 5) -> dict:
    """Compare :func:`reference` integers with ``hwgen.sim.golden.run_layers`` outputs.

    Returns counts: ``hidden_mismatches`` and ``logit_mismatches`` (elements),
    ``argmax_ties`` (vectors whose largest logit is shared), ``argmax_mismatches`` (vectors
    whose PyTorch argmax differs from the golden label: only possible at ties),
    ``vectors``, ``mismatches``: the first ``show`` locations
    ``(layer, vector, channel, pytorch, golden)``, and ``first``: the first of them or
    ``None``."""
    layers = list(graph.layers)
    mvaus = [i for i, layer in enumerate(layers) if isinstance(layer, MVAU)]
    last = mvaus[-1]
    result = {"hidden_mismatches": 0, "logit_mismatches": 0, "argmax_ties": 0,
              "argmax_mismatches": 0, "vectors": 0, "mismatches": []}
    for i in mvaus:
        name = layers[i].name
        mine = np.asarray(ref[name], dtype=np.float64)
        gold = np.asarray(golden_layer_outputs[i], dtype=np.int64).reshape(len(mine), -1)
        # Source neurons structured pruning removed are constants: PyTorch must agree.
        # (None marks a neuron removed because nothing used it: its output varies.)
        removed = graph.meta.get("removed_neurons", {}).get(name, {})
        constant = {int(k): v for k, v in removed.items() if v is not None}
        kept = layers[i].neurons if layers[i].neurons is not None else \
            list(range(mine.shape[1]))
        columns = [*kept, *constant]
        gold = np.concatenate([gold, np.broadcast_to(
            np.array(list(constant.values()), np.int64), (len(gold), len(constant)))], axis=1)
        if sorted([*kept, *map(int, removed)]) != list(range(mine.shape[1])):
            raise ValueError(f"{name}: the layer's neurons and removed neurons do not cover "
                             f"the {mine.shape[1]} outputs of source node "
                             f"'{layers[i].source}'")
        if layers[i].out_bipolar:
            gold = 2 * gold - 1  # the stream's bit; PyTorch has the value
        diff = np.argwhere(mine[:, columns] != gold)
        result["hidden_mismatches" if i != last else "logit_mismatches"] += len(diff)
        for v, c in diff[: max(0, show - len(result["mismatches"]))]:
            result["mismatches"].append((name, int(v), columns[c], float(mine[v, columns[c]]),
                                         int(gold[v, c])))
    logits = np.asarray(ref[layers[last].name], dtype=np.float64)
    result["vectors"] = len(logits)
    ties = (logits == logits.max(axis=1, keepdims=True)).sum(axis=1) > 1
    result["argmax_ties"] = int(ties.sum())
    torch_label = torch.argmax(torch.from_numpy(logits), dim=1).numpy()
    if any(isinstance(layer, LabelSelect) for layer in layers[last + 1:]):
        j = next(j for j in range(last + 1, len(layers)) if isinstance(layers[j], LabelSelect))
        golden_label = np.asarray(golden_layer_outputs[j]).reshape(-1)
    else:
        golden_label = np.argmax(np.asarray(golden_layer_outputs[last]), axis=1)
    result["argmax_mismatches"] = int((torch_label != golden_label).sum())
    result["first"] = result["mismatches"][0] if result["mismatches"] else None
    return result
