"""Front end for ``torch.export`` archives (``.pt`` / ``.pt2`` written by
:func:`torch.export.save`).

The kind of a file is decided by its content, not its suffix: a :func:`torch.save` pickle is a
zip file too, and hwgen refuses it (unpickling runs code). The exported ATen graph is walked
node by node:

* nodes whose inputs are all parameters, buffers or constants are constant-folded by running
  them (weight-scale computation, weight quantization...); folded ``hwgen::quant`` nodes keep
  their quantizer parameters so a linear layer's weights become integers (and folded
  ``hwgen::bipolar`` nodes make them binary);
* ``hwgen::quant`` and ``hwgen::bipolar`` on the running tensor become an
  :class:`~hwgen.compiler.ir.Quant`;
* ``aten.linear`` becomes an :class:`~hwgen.compiler.ir.Linear` (its input must come from a
  quantizer, its weight from a folded ``hwgen::quant``), ``aten.conv2d`` a
  :class:`~hwgen.compiler.ir.Conv` (after an :class:`~hwgen.compiler.ir.Pad` when it pads);
* ``aten.pad`` / ``aten.constant_pad_nd`` (constant mode) become a
  :class:`~hwgen.compiler.ir.Pad`, ``aten.max_pool2d`` a :class:`~hwgen.compiler.ir.MaxPool`
  (after a ``-inf`` :class:`~hwgen.compiler.ir.Pad` when it pads);
* batch norm in eval mode, ReLU, clamps and arithmetic with constants become
  :class:`~hwgen.compiler.ir.FloatOp` nodes that keep the model's own op;
* flatten/view/reshape that keep the batch dimension vanish, and so do identities (clone,
  dropout in eval mode...).

Anything else raises :class:`~hwgen.compiler.errors.UnsupportedOpError` naming the op and the
node.
"""

from __future__ import annotations

import operator
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch.export.graph_signature import InputKind
from torch.fx.node import map_arg

import hwgen.nn  # noqa: F401  (registers hwgen::quant so archives using it load)

from . import ir
from .errors import ModelFileError, QuantizationError, UnsupportedOpError

__all__ = ["check_file", "from_program", "load", "load_program"]

_aten = torch.ops.aten


def _ops(*names):
    found = set()
    for name in names:
        packet, _, overload = name.partition(".")
        packet = getattr(_aten, packet, None)
        if packet is not None and hasattr(packet, overload or "default"):
            found.add(getattr(packet, overload or "default"))
    return found


QUANT = torch.ops.hwgen.quant.default
BIPOLAR = torch.ops.hwgen.bipolar.default
LINEAR = _ops("linear.default")
CONV = _ops("conv2d.default", "conv2d.padding")
PAD = _ops("pad.default", "constant_pad_nd.default")
MAX_POOL = _ops("max_pool2d.default", "max_pool2d_with_indices.default")
BATCH_NORM = _ops("batch_norm.default")
BATCH_NORM_EVAL = _ops("_native_batch_norm_legit_no_training.default")
BATCH_NORM_TRAIN = _ops("_native_batch_norm_legit.default", "_native_batch_norm_legit.no_stats",
                        "_native_batch_norm_legit_functional.default",
                        "native_batch_norm.default", "_batch_norm_with_update.default",
                        "_batch_norm_with_update_functional.default")
ELEMENTWISE = _ops("relu.default", "add.Tensor", "add.Scalar", "sub.Tensor", "sub.Scalar",
                   "mul.Tensor", "mul.Scalar", "div.Tensor", "div.Scalar", "clamp.default",
                   "clamp.Tensor", "clamp_min.default", "clamp_max.default", "hardtanh.default")
RESHAPE = _ops("flatten.using_ints", "view.default", "reshape.default", "_unsafe_view.default",
               "squeeze.dim", "squeeze.dims", "squeeze.default", "unsqueeze.default")
IDENTITY = _ops("clone.default", "contiguous.default", "alias.default", "detach.default",
                "dropout.default", "lift_fresh_copy.default")
SUPPORTED = ("hwgen.quant, hwgen.bipolar, aten.linear, aten.conv2d, aten.max_pool2d, aten.pad "
             "(constant), aten.batch_norm (eval mode), aten.relu, aten.clamp, aten.hardtanh, "
             "aten.add/sub/mul/div with a constant, aten.flatten/view/reshape")


def _where(node) -> str:
    trace = node.meta.get("stack_trace") if hasattr(node, "meta") else None
    if trace:
        lines = [line.strip() for line in trace.strip().splitlines() if line.strip()]
        if lines:
            return f" (model code: {lines[-1]})"
    return ""


def _kind(path: Path) -> str:
    """``"export"`` or ``"pickle"``, by content; :class:`ModelFileError` for anything else."""
    if not path.is_file():
        raise ModelFileError(f"model file '{path}' does not exist or is not a file; pass the "
                             f".pt/.pt2 archive written by torch.export.save.")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as file:
            head = file.read(2)
        if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            return "pickle"  # a legacy (non-zip) torch.save file
        raise ModelFileError(f"'{path}' is not a torch.export archive (it is not a zip "
                             f"archive); hwgen reads .pt/.pt2 files written by "
                             f"torch.export.save: export the model with ep = "
                             f"torch.export.export(model.eval(), (example_input,)) and "
                             f"torch.export.save(ep, '{path.stem}.pt2').")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as error:
        raise ModelFileError(f"'{path}' is a damaged zip archive ({error}); re-export it with "
                             f"torch.export.save.") from error
    if any(name.rsplit("/", 1)[-1] == "archive_format" for name in names):
        return "export"
    if any(name.rsplit("/", 1)[-1] == "data.pkl" for name in names):
        return "pickle"
    raise ModelFileError(f"'{path}' is a zip archive but not a torch.export archive (no "
                         f"archive_format entry); write the model with torch.export.save.")


def check_file(path, *, allow_pickle: bool = False) -> str:
    """Check by content that ``path`` is a ``torch.export`` archive and return its kind
    (``"export"``, or ``"pickle"`` with ``allow_pickle``); raise :class:`ModelFileError` for
    anything else, and for pickles unless ``allow_pickle``."""
    path = Path(path)
    kind = _kind(path)
    if kind == "pickle" and not allow_pickle:
        raise ModelFileError(f"'{path}' is a torch.save pickle, not a torch.export archive; "
                             f"hwgen refuses pickles because unpickling runs arbitrary code "
                             f"from the file. Export the model instead: ep = "
                             f"torch.export.export(model.eval(), (example_input,)); "
                             f"torch.export.save(ep, '{path.stem}.pt2'). (For a file you "
                             f"trust, --allow-pickle / allow_pickle=True reads it anyway.)")
    return kind


def load_program(path, *, allow_pickle: bool = False) -> torch.export.ExportedProgram:
    """Load a ``torch.export`` archive after checking its kind by content. With
    ``allow_pickle`` (only for trusted files: unpickling runs code), a pickled ``nn.Module`` is
    unpickled and exported with an example batch ``[2, in_features]`` of its first layer."""
    path = Path(path)
    if check_file(path, allow_pickle=allow_pickle) == "pickle":
        return _export_pickle(path)
    try:
        # A file object, so torch does not complain about a .pt suffix.
        with open(path, "rb") as file:
            return torch.export.load(file)
    except Exception as error:  # torch raises many kinds; the user needs the message
        raise ModelFileError(f"'{path}' could not be loaded with torch.export.load: "
                             f"{type(error).__name__}: {error}. If the model uses custom "
                             f"operators other than hwgen's, hwgen cannot read it; "
                             f"re-export it with hwgen.nn layers.") from error


def _export_pickle(path: Path) -> torch.export.ExportedProgram:
    try:
        obj = torch.load(path, weights_only=False)  # the user opted in: allow_pickle
    except Exception as error:
        raise ModelFileError(f"'{path}' could not be unpickled: {type(error).__name__}: "
                             f"{error}.") from error
    if isinstance(obj, torch.export.ExportedProgram):
        return obj
    if not isinstance(obj, torch.nn.Module):
        raise ModelFileError(f"'{path}' holds a {type(obj).__name__}, not an nn.Module; save "
                             f"the model with torch.export.save.")
    if any(hasattr(m, "kernel_size") for m in obj.modules()):
        raise ModelFileError(f"'{path}': a pickled module with convolutions or pooling does not "
                             f"say its input's height and width; export it with "
                             f"torch.export.export(model, (torch.zeros(1, C, H, W),)).")
    first = next((m for m in obj.modules() if hasattr(m, "in_features")), None)
    if first is None:
        raise ModelFileError(f"'{path}': cannot tell the input shape of the pickled module "
                             f"(no layer with in_features); export it with torch.export.")
    try:
        return torch.export.export(obj.eval(), (torch.zeros(2, int(first.in_features)),))
    except Exception as error:
        raise ModelFileError(f"'{path}': exporting the pickled module failed: "
                             f"{type(error).__name__}: {error}; export it yourself with "
                             f"torch.export.export.") from error


def load(path, *, allow_pickle: bool = False) -> ir.Graph:
    """Read a ``torch.export`` archive into the IR."""
    path = Path(path)
    graph = from_program(load_program(path, allow_pickle=allow_pickle), name=path.stem)
    graph.meta["source_kind"] = _kind(path)
    return graph


def _constants(ep) -> tuple[dict, list]:
    consts, users = {}, []
    state = ep.state_dict
    for spec in ep.graph_signature.input_specs:
        name = spec.arg.name
        if spec.kind == InputKind.USER_INPUT:
            users.append(name)
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            value = state[spec.target] if spec.target in state else ep.constants[spec.target]
            consts[name] = value.detach().clone()
        else:
            raise UnsupportedOpError(f"the exported program has an input '{name}' of kind "
                                     f"{spec.kind.name}, which hwgen does not support; export a "
                                     f"model whose only inputs are tensors and parameters.")
    return consts, users


def _shape(node):
    value = node.meta.get("val") if hasattr(node, "meta") else None
    return tuple(int(d) for d in value.shape) if isinstance(value, torch.Tensor) else None


def _scalar(value, what: str, node) -> float:
    value = torch.as_tensor(value)
    if value.numel() != 1:
        raise QuantizationError(f"{what} of quantizer node '{node.name}'{_where(node)} has "
                                f"{value.numel()} elements; hwgen supports only per-tensor "
                                f"scales and zero points for now: use one scale per tensor.")
    return float(value.reshape(()))


def _check_zero_point(zero_point: float, node):
    if zero_point != 0.0:
        raise QuantizationError(f"quantizer node '{node.name}'{_where(node)} has zero point "
                                f"{zero_point}; hwgen supports only zero point 0 (symmetric "
                                f"quantization, or unsigned with zero at 0): use a zero point "
                                f"of 0, e.g. hwgen.nn layers.")


def from_program(ep: torch.export.ExportedProgram, name: str = "model") -> ir.Graph:
    """Walk an exported program's ATen graph into an :class:`ir.Graph`."""
    sig = ep.graph_signature
    if sig.buffers_to_mutate or sig.user_inputs_to_mutate:
        mutated = ", ".join(sorted(set(sig.buffers_to_mutate.values())
                                   | set(sig.user_inputs_to_mutate.values())))
        raise QuantizationError(f"the exported program updates buffers ({mutated}) when it "
                                f"runs, which means it was exported in training mode (e.g. "
                                f"BatchNorm updating its running statistics); call model.eval() "
                                f"before torch.export.export.")
    const_by_name, user_inputs = _constants(ep)
    if len(user_inputs) != 1:
        raise UnsupportedOpError(f"the exported program has {len(user_inputs)} inputs "
                                 f"({', '.join(user_inputs)}); hwgen supports models with one "
                                 f"input tensor.")

    consts: dict = {}      # fx node -> constant value
    qinfo: dict = {}       # fx node -> (scale, zero_point, bits, signed, narrow, bipolar)
    current = None         # the fx node holding the running tensor
    input_shape = None
    nodes: list = []
    output = None
    tuple_nodes = set()    # fx nodes returning a tuple whose result 0 is the running tensor
    flat_map = None        # the node that flattened a feature map, until the next linear layer

    def fail_branch(node):
        raise UnsupportedOpError(f"node '{node.name}' ({node.target}){_where(node)} combines "
                                 f"several non-constant tensors or reuses an earlier one; hwgen "
                                 f"supports chains of layers only (no branches or residual "
                                 f"connections) for now.")

    def need_2d(node, what):
        shape = _shape(node.args[0])
        if shape is not None and len(shape) != 2:
            raise UnsupportedOpError(f"{what} node '{node.name}' ({node.target}){_where(node)} "
                                     f"gets a tensor of shape {list(shape)}; hwgen supports "
                                     f"[batch, features] tensors here: flatten first.")

    def need_4d(node, what):
        shape = _shape(node.args[0])
        if shape is not None and len(shape) != 4:
            raise UnsupportedOpError(f"{what} node '{node.name}' ({node.target}){_where(node)} "
                                     f"gets a tensor of shape {list(shape)}; hwgen supports "
                                     f"[batch, channels, height, width] feature maps here.")

    def not_after_flatten(node, what):
        if flat_map is not None:
            raise UnsupportedOpError(
                f"{what} node '{node.name}' ({node.target}){_where(node)} works on the "
                f"flattened feature map of '{flat_map.name}' with per-feature constants; hwgen "
                f"folds per-channel ops of a convolution into thresholds: apply them before the "
                f"flatten (e.g. BatchNorm2d instead of BatchNorm1d).")

    def need_channelwise(node, what):
        """A float op on a [N, features] tensor, or on a feature map with operands constant
        over the pixels (per channel), so that one threshold table serves every pixel."""
        shape = _shape(node.args[0])
        if shape is None or len(shape) == 2:
            if flat_map is not None and any(
                    arg in consts and torch.is_tensor(consts[arg]) and consts[arg].numel() > 1
                    for arg in node.all_input_nodes):
                not_after_flatten(node, what)
            return
        need_4d(node, what)
        for arg in node.all_input_nodes:
            if arg in consts and torch.is_tensor(consts[arg]):
                dims = (1,) * (4 - consts[arg].dim()) + tuple(consts[arg].shape)
                if consts[arg].dim() > 4 or dims[0] != 1 or dims[2:] != (1, 1):
                    raise UnsupportedOpError(
                        f"{what} node '{node.name}' ({node.target}){_where(node)} applies a "
                        f"constant of shape {list(consts[arg].shape)} to a feature map; hwgen "
                        f"needs per-channel constants ([C, 1, 1]) or scalars there, the same "
                        f"for every pixel.")

    for node in ep.graph.nodes:
        if node.op == "placeholder":
            if node.name in const_by_name:
                consts[node] = const_by_name[node.name]
            else:
                current = node
                shape = _shape(node)
                input_shape = shape[1:] if shape else None
            continue
        if node.op == "output":
            results = [a for a in node.args[0] if a is not None]
            if len(results) != 1 or results[0] is not current:
                raise UnsupportedOpError(f"the exported program returns {len(results)} values "
                                         f"or a constant; hwgen supports models with one output "
                                         f"computed from the input.")
            output = current.name
            continue
        if node.op != "call_function":
            raise UnsupportedOpError(f"node '{node.name}' is a {node.op} node ({node.target}); "
                                     f"hwgen reads flat ATen graphs written by torch.export.")
        inputs = node.all_input_nodes
        dynamic = [n for n in inputs if n not in consts]
        target = node.target
        if not dynamic:
            args = map_arg(node.args, lambda n: consts[n])
            kwargs = map_arg(node.kwargs, lambda n: consts[n])
            with torch.no_grad():
                consts[node] = target(*args, **kwargs)
            if target is QUANT:
                _, scale, zero_point, bits, signed, narrow = args
                qinfo[node] = (scale, zero_point, bits, signed, narrow, False)
            elif target is BIPOLAR:
                _, scale, threshold = args
                if _scalar(threshold, "the threshold", node) != 0:
                    raise QuantizationError(f"binary weights of node '{node.name}'"
                                            f"{_where(node)} are split at "
                                            f"{float(threshold)}, not 0; binary weights must "
                                            f"be the sign of the latent weights.")
                qinfo[node] = (scale, torch.tensor(0.0), 1, True, False, True)
            continue
        if len(dynamic) > 1 or dynamic[0] is not current:
            fail_branch(node)

        if target is operator.getitem:
            if node.args[1] != 0 or current not in tuple_nodes:
                raise UnsupportedOpError(f"node '{node.name}' takes result {node.args[1]} of "
                                         f"'{current.name}' ({current.target}); hwgen uses only "
                                         f"the first result of such ops.")
            current = node
            continue
        if target is QUANT:
            _, scale, zero_point, bits, signed, narrow = node.args
            scale, zero_point = _constants_of(node, consts, "quantizer", scale=scale,
                                              zero_point=zero_point)
            _check_zero_point(zero_point, node)
            nodes.append(ir.Quant(node.name, int(bits), bool(signed), bool(narrow), scale))
        elif target is BIPOLAR:
            _, scale, threshold = node.args
            scale, threshold = _constants_of(node, consts, "binarizer", scale=scale,
                                             threshold=threshold)
            nodes.append(ir.Quant(node.name, 1, False, False, scale, bipolar=True,
                                  threshold=threshold))
        elif target in LINEAR:
            need_2d(node, "linear")
            if not nodes or not isinstance(nodes[-1], (ir.Quant, ir.Pad, ir.MaxPool)):
                raise QuantizationError(f"the input of linear node '{node.name}'{_where(node)} "
                                        f"is not quantized (it comes from "
                                        f"'{node.args[0].name}', not from a hwgen.quant node); "
                                        f"hwgen maps only integer layers to hardware: put a "
                                        f"hwgen.nn quantizer (QuantIdentity, QuantReLU, "
                                        f"BinaryInput, SignActivation) before "
                                        f"it.")
            nodes.append(_linear(node, consts, qinfo))
            flat_map = None
            bias = node.args[2] if len(node.args) > 2 else node.kwargs.get("bias")
            if bias is not None:
                nodes.append(ir.FloatOp(f"{node.name}.bias", _aten.add.Tensor,
                                        (ir.X, consts[bias])))
        elif target in CONV:
            need_4d(node, "convolution")
            if not nodes or not isinstance(nodes[-1], (ir.Quant, ir.Pad, ir.MaxPool)):
                raise QuantizationError(f"the input of convolution node '{node.name}'"
                                        f"{_where(node)} is not quantized (it comes from "
                                        f"'{node.args[0].name}'); put a hwgen.nn quantizer "
                                        f"(QuantIdentity, QuantReLU, BinaryInput, "
                                        f"SignActivation) before it.")
            conv, pads = _conv(node, consts, qinfo)
            if any(pads):
                nodes.append(ir.Pad(f"{node.name}.pad", pads, 0.0))
            nodes.append(conv)
            bias = node.args[2] if len(node.args) > 2 else node.kwargs.get("bias")
            if bias is not None:
                nodes.append(ir.FloatOp(f"{node.name}.bias", _aten.add.Tensor,
                                        (ir.X, consts[bias].reshape(-1, 1, 1))))
        elif target in PAD:
            need_4d(node, "pad")
            nodes.append(_pad(node))
        elif target in MAX_POOL:
            need_4d(node, "max-pool")
            kernel, stride, pads = _max_pool(node)
            if any(pads):
                nodes.append(ir.Pad(f"{node.name}.pad", pads, float("-inf")))
            nodes.append(ir.MaxPool(node.name, kernel, stride))
            if target is not _aten.max_pool2d.default:
                tuple_nodes.add(node)
        elif target in BATCH_NORM or target in BATCH_NORM_EVAL or target in BATCH_NORM_TRAIN:
            training = target in BATCH_NORM_TRAIN or (target in BATCH_NORM and node.args[5])
            if training:
                raise QuantizationError(f"batch norm node '{node.name}'{_where(node)} is in "
                                        f"training mode; call model.eval() before "
                                        f"torch.export.export so it uses its running "
                                        f"statistics.")
            if len(_shape(node.args[0]) or (0, 0)) != 2:
                need_4d(node, "batch norm")  # its constants are per channel by definition
            else:
                not_after_flatten(node, "batch norm")
            nodes.append(_float_op(node, consts, index=0 if target in BATCH_NORM_EVAL else None))
            if target in BATCH_NORM_EVAL:
                tuple_nodes.add(node)
        elif target in ELEMENTWISE:
            need_channelwise(node, "float")
            nodes.append(_float_op(node, consts))
        elif target in RESHAPE:
            before, after = _shape(node.args[0]), _shape(node)
            if before and after and after[0] != before[0]:
                raise UnsupportedOpError(f"reshape node '{node.name}' ({target}){_where(node)} "
                                         f"changes the batch dimension ({list(before)} -> "
                                         f"{list(after)}); hwgen supports reshapes that keep "
                                         f"it, such as flatten(1).")
            if before and after and len(before) > 2 and after != before \
                    and after[1:] != (int(np.prod(before[1:])),):
                raise UnsupportedOpError(f"reshape node '{node.name}' ({target}){_where(node)} "
                                         f"turns a feature map {list(before)} into "
                                         f"{list(after)}; hwgen supports flattening a feature "
                                         f"map whole ([N, C*H*W]), as before a linear layer.")
            if before and after and len(before) == 2 and len(after) > 2:
                raise UnsupportedOpError(f"reshape node '{node.name}' ({target}){_where(node)} "
                                         f"turns [batch, features] {list(before)} into a "
                                         f"feature map {list(after)}; hwgen takes feature maps "
                                         f"from the model's input or a convolution: export the "
                                         f"model with its input as an image [N, C, H, W].")
            if before and after and len(before) == 4 and len(after) == 2:
                flat_map = node
        elif target in IDENTITY:
            if target in _ops("dropout.default") and node.args[2]:
                raise QuantizationError(f"dropout node '{node.name}'{_where(node)} is in "
                                        f"training mode; call model.eval() before "
                                        f"torch.export.export.")
        else:
            raise UnsupportedOpError(f"unsupported operation {target} at node '{node.name}'"
                                     f"{_where(node)}; hwgen maps {SUPPORTED} to hardware for "
                                     f"now: replace the op or remove it from the model.")
        current = node

    if not nodes or not isinstance(nodes[0], ir.Quant):
        raise QuantizationError("the model input is not quantized first; put a "
                                "hwgen.nn.QuantIdentity (or BinaryInput) on the input so the "
                                "accelerator gets integers.")
    if not any(isinstance(n, ir.Linear) for n in nodes):
        raise UnsupportedOpError("the model has no linear layer; hwgen needs at least one "
                                 "(a classifier ends with one, after a flatten).")
    if output is not None and len(_shape(current) or ()) != 2:
        raise UnsupportedOpError(f"the model returns a tensor of shape "
                                 f"{list(_shape(current))}; hwgen needs a [batch, features] "
                                 f"output from a last linear layer.")
    return ir.Graph(name=name, input_shape=tuple(input_shape or ()), nodes=nodes, output=output,
                    meta={"format": "torch.export"})


def _constants_of(node, consts, kind: str, **args) -> list[float]:
    """The values of a quantizer's or binarizer's per-tensor arguments (``scale`` first, which
    must be positive), each a constant of the program."""
    values = []
    for name, arg in args.items():
        what = name.replace("_", " ")
        if arg not in consts:
            raise QuantizationError(f"the {what} of {kind} node '{node.name}'{_where(node)} "
                                    f"depends on the input; hwgen needs constant (trained or "
                                    f"fixed) values.")
        values.append(_scalar(consts[arg], f"the {what}", node))
    if not values[0] > 0:
        raise QuantizationError(f"{kind} node '{node.name}'{_where(node)} has scale "
                                f"{values[0]}; scales must be positive.")
    return values


def _float_op(node, consts, index=None) -> ir.FloatOp:
    def sub(a):
        if isinstance(a, torch.fx.Node):
            return consts[a] if a in consts else ir.X
        return a
    args = map_arg(node.args, sub)
    kwargs = map_arg(node.kwargs, sub)
    return ir.FloatOp(node.name, node.target, tuple(args), dict(kwargs), index)


def _weights(node, consts, qinfo, kind: str, layers: str, ndim: int, shape: str):
    """The integer weights of a linear or convolution node and their quantizer:
    ``(ints, scale, bits, signed, narrow, bipolar)``."""
    weight = node.args[1]
    if weight not in qinfo:
        raise QuantizationError(f"the weights of {kind} node '{node.name}'{_where(node)} are "
                                f"not quantized (they do not come from a hwgen.quant node); use "
                                f"{layers}.")
    scale, zero_point, bits, signed, narrow, bipolar = qinfo[weight]
    scale = _scalar(scale, "the weight scale", weight)
    _check_zero_point(_scalar(zero_point, "the weight zero point", weight), weight)
    values = consts[weight].detach().to(torch.float64).numpy()
    ints = np.rint(values / scale)
    if not np.array_equal(ints * scale, values):
        raise QuantizationError(f"the quantized weights of {kind} node '{node.name}' are not "
                                f"integers times their scale {scale}; this is a bug in the "
                                f"model's quantizer or in hwgen.")
    if ints.ndim != ndim:
        raise UnsupportedOpError(f"{kind} node '{node.name}' has {ints.ndim}-D weights; hwgen "
                                 f"expects {shape}.")
    return ints.astype(np.int64), scale, int(bits), bool(signed), bool(narrow), bipolar


def _linear(node, consts, qinfo) -> ir.Linear:
    ints, scale, bits, signed, narrow, bipolar = _weights(
        node, consts, qinfo, "linear", "hwgen.nn.QuantLinear or hwgen.nn.BinaryLinear", 2,
        "[out_features, in_features]")
    return ir.Linear(node.name, ints, scale, bits, signed, narrow, weight_bipolar=bipolar)


def _ints(node, value, what: str, count: int, least: int) -> tuple:
    values = [value] * count if isinstance(value, int) else list(value)
    if len(values) == 1:
        values *= count
    if len(values) != count or not all(isinstance(v, int) and v >= least for v in values):
        raise UnsupportedOpError(f"node '{node.name}' ({node.target}){_where(node)} has "
                                 f"{what}={value!r}; hwgen supports {count} integers of at least "
                                 f"{least} here.")
    return tuple(values)


def _conv(node, consts, qinfo) -> tuple[ir.Conv, tuple]:
    """A convolution node as an :class:`ir.Conv` and its zero padding (top, left, bottom,
    right)."""
    # Geometry first: a grouped or dilated convolution is refused as such, whatever its
    # weights.
    kernel = (_shape(node.args[1]) or ())[2:]
    if kernel:
        stride, pads = _conv_geometry(node, kernel)
    ints, scale, bits, signed, narrow, bipolar = _weights(
        node, consts, qinfo, "convolution", "hwgen.nn.QuantConv2d or hwgen.nn.BinaryConv2d", 4,
        "[out_channels, in_channels, kh, kw]")
    if not kernel:
        stride, pads = _conv_geometry(node, ints.shape[2:])
    conv = ir.Conv(node.name, ints, scale, bits, signed, narrow, stride, weight_bipolar=bipolar)
    return conv, pads


def _conv_geometry(node, kernel) -> tuple[tuple, tuple]:
    """A convolution node's ``(stride, (top, left, bottom, right) zero padding)`` for a
    ``kernel = (kh, kw)``; dilation and groups refused."""
    args = list(node.args) + [None] * (7 - len(node.args))
    _, _, _, stride, padding, dilation, groups = args
    stride = _ints(node, stride if stride is not None else 1, "stride", 2, 1)
    dilation = _ints(node, dilation if dilation is not None else 1, "dilation", 2, 1)
    if dilation != (1, 1):
        raise UnsupportedOpError(f"convolution node '{node.name}'{_where(node)} has dilation "
                                 f"{list(dilation)}; hwgen supports dilation 1.")
    if (groups or 1) != 1:
        raise UnsupportedOpError(f"convolution node '{node.name}'{_where(node)} has {groups} "
                                 f"groups; hwgen supports ordinary convolutions (groups=1).")
    kh, kw = (int(k) for k in kernel)
    if padding is None or padding == "valid":
        pads = (0, 0, 0, 0)
    elif padding == "same":
        if stride != (1, 1):
            raise UnsupportedOpError(f"convolution node '{node.name}'{_where(node)} pads "
                                     f"'same' with stride {list(stride)}; PyTorch allows that "
                                     f"with stride 1 only.")
        # PyTorch puts the odd pixel of an even kernel's padding after the map.
        pads = ((kh - 1) // 2, (kw - 1) // 2, kh // 2, kw // 2)
    else:
        ph, pw = _ints(node, padding, "padding", 2, 0)
        pads = (ph, pw, ph, pw)
    return stride, pads


def _pad(node) -> ir.Pad:
    args = list(node.args) + [None] * (4 - len(node.args))
    if node.target is _aten.constant_pad_nd.default:
        _, pad, value, mode = args[0], args[1], args[2], "constant"
    else:
        _, pad, mode, value = args[:4]
        mode = mode or node.kwargs.get("mode", "constant")
        value = value if value is not None else node.kwargs.get("value")
    value = 0.0 if value is None else float(value)
    pad = list(pad)
    if mode != "constant":
        raise UnsupportedOpError(f"pad node '{node.name}'{_where(node)} pads in {mode!r} mode; "
                                 f"hwgen supports constant padding.")
    if len(pad) not in (2, 4) or min(pad) < 0:
        raise UnsupportedOpError(f"pad node '{node.name}'{_where(node)} pads {pad}; hwgen pads "
                                 f"the height and width of a feature map by non-negative "
                                 f"amounts (left, right[, top, bottom]).")
    left, right, top, bottom = [*pad, 0, 0][:4]
    return ir.Pad(node.name, (top, left, bottom, right), value)


def _max_pool(node):
    """``(kernel, stride, pads)`` of a max-pool node."""
    args = list(node.args) + [None] * (6 - len(node.args))
    _, kernel, stride, padding, dilation, ceil_mode = args
    kernel = _ints(node, kernel, "kernel_size", 2, 1)
    stride = _ints(node, stride, "stride", 2, 1) if stride else kernel
    ph, pw = _ints(node, padding if padding is not None else 0, "padding", 2, 0)
    if _ints(node, dilation if dilation is not None else 1, "dilation", 2, 1) != (1, 1):
        raise UnsupportedOpError(f"max-pool node '{node.name}'{_where(node)} has a dilation; "
                                 f"hwgen supports dilation 1.")
    if ceil_mode:
        raise UnsupportedOpError(f"max-pool node '{node.name}'{_where(node)} uses ceil_mode; "
                                 f"hwgen supports ceil_mode=False (the default).")
    return kernel, stride, (ph, pw, ph, pw)
