"""Front end for QONNX models (``.onnx``: Brevitas ``export_qonnx`` output, the FINN ecosystem).

The file is read with the ``onnx`` package (a protobuf: reading it runs no code) and its nodes
are walked in their topological order along one chain from the graph input:

* nodes whose inputs are all initializers or constants are folded; ``Quant`` /
  ``BipolarQuant`` of a constant keep their quantizer, so a layer's weights become integers
  (layout ops such as ``Transpose`` or ``Reshape`` keep it too); other constant nodes run in
  ONNX's reference evaluator;
* ``Quant`` and ``BipolarQuant`` on the running tensor become an
  :class:`~hwgen.compiler.ir.Quant` (a 1-bit signed ``Quant`` is bipolar, as in qonnx), and
  ``MultiThreshold`` a :class:`~hwgen.compiler.ir.Quant` with explicit thresholds;
* ``Gemm`` and ``MatMul`` become an :class:`~hwgen.compiler.ir.Linear`, ``Conv`` an
  :class:`~hwgen.compiler.ir.Conv` (after an :class:`~hwgen.compiler.ir.Pad` when it pads),
  ``MaxPool`` an :class:`~hwgen.compiler.ir.MaxPool` (after a ``-inf`` pad), a bias an add;
* ``BatchNormalization``, ``Relu``, ``Clip`` and ``Add``/``Sub``/``Mul``/``Div`` with a
  constant become :class:`~hwgen.compiler.ir.FloatOp` nodes that run the ONNX node itself, alone,
  in ONNX Runtime: the same runtime and the same single-node sessions as qonnx's executor, so
  thresholds derive from the model's own arithmetic;
* ``Flatten`` and ``Reshape`` that flatten, ``Transpose`` that moves only size-1 axes and
  ``Identity`` vanish.

Anything else raises :class:`~hwgen.compiler.errors.UnsupportedOpError` naming the op type, the
node and the node before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import ir
from .errors import ModelFileError, QuantizationError, UnsupportedOpError

__all__ = ["CUSTOM_DOMAINS", "load", "read"]

#: Domains of QONNX's custom ops (FINN's older name, and Brevitas' before QONNX).
CUSTOM_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general", "finn", "onnx.brevitas")
#: Oldest default-domain opset whose ops this front end knows.
MIN_OPSET = 13
#: Ops that only move data around when they keep the quantizer of a constant.
LAYOUT = ("Identity", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze")
#: Float ops run as they are, one node at a time, in ONNX Runtime.
FLOAT = ("BatchNormalization", "Relu", "Clip", "Add", "Sub", "Mul", "Div")
SUPPORTED = ("Quant, BipolarQuant, MultiThreshold, Gemm, MatMul, Conv, MaxPool, "
             "BatchNormalization, Relu, Clip, Add/Sub/Mul/Div with a constant, Flatten, "
             "Reshape (flattening), Transpose (of size-1 axes), Identity, Dropout")


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ModelFileError("reading .onnx models needs the onnx and onnxruntime packages: "
                             "pip install 'hwgen[onnx]'.") from None
    return onnx


@dataclass
class _QConst:
    """A quantized constant: integers ``q`` (float array), its ``scale`` (an array of the same
    shape: layout ops move it with ``q``) and quantizer."""

    q: np.ndarray
    scale: np.ndarray
    bits: int
    signed: bool
    narrow: bool
    bipolar: bool = False


def load(path):
    """The ``onnx.ModelProto`` at ``path`` (with its external data), checked."""
    onnx = _onnx()
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file '{path}' does not exist or is not a file; pass the "
                             f".onnx file written by brevitas.export.export_qonnx.")
    try:
        model = onnx.load(str(path))
    except Exception as error:  # protobuf and external-data errors come in many kinds
        raise ModelFileError(f"'{path}' could not be read as an ONNX model: "
                             f"{type(error).__name__}: {error}. Export it with "
                             f"brevitas.export.export_qonnx (keep a .onnx.data file next to "
                             f"it).") from error
    if not model.graph.node:
        raise ModelFileError(f"'{path}' holds no ONNX graph nodes; is it an ONNX model?")
    return model


def read(path) -> ir.Graph:
    """Read a QONNX model into the IR."""
    path = Path(path)
    graph = _Reader(load(path), path.stem).run()
    graph.meta["source_path"] = str(path)
    return graph


def _label(node) -> str:
    """A node's name, or its first output's where the file leaves the name empty."""
    return node.name or (node.output[0] if node.output else node.op_type)


def _attrs(node) -> dict:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _scalar(value, what: str, where: str) -> float:
    value = np.asarray(value)
    if value.size != 1:
        flat = value.reshape(-1)
        if not np.all(flat == flat[0]):
            hint = (": quantize activations with a per-tensor quantizer (Brevitas: "
                    "Int8ActPerTensorFixedPoint, Uint8ActPerTensorFixedPoint)"
                    if what == "scale" else "")
            raise QuantizationError(f"{where}: the {what} has {value.size} different values "
                                    f"(per channel); hwgen needs one per tensor here{hint}.")
    return float(value.reshape(-1)[0])


def _int_quant(x, scale, bits, signed, narrow):
    """The integers of qonnx's ``Quant`` (round half to even, zero point 0)."""
    lo, hi = ir.int_range(bits, signed, narrow)
    y = np.asarray(x, dtype=np.float32) / np.asarray(scale, dtype=np.float32)
    return np.round(np.clip(y, lo, hi))


class _Runtime:
    """One ONNX node run alone in ONNX Runtime on the running tensor (the node's input
    ``index``), its other inputs fed as constants: exactly how qonnx's executor runs it."""

    def __init__(self, node, index: int, consts: dict, opset: int):
        _onnx()
        from onnx import TensorProto, helper
        try:
            import onnxruntime
        except ImportError:
            raise ModelFileError("reading .onnx models needs onnxruntime: pip install "
                                 "'hwgen[onnx]'.") from None
        self.op = node.op_type
        self.input = node.input[index]
        self.feeds = {name: consts[name] for name in node.input if name and name != self.input}
        inputs = [helper.make_tensor_value_info(self.input, TensorProto.FLOAT, None)]
        inputs += [helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
            for name, value in self.feeds.items()]
        outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
                   for name in node.output if name]
        model = helper.make_model(helper.make_graph([node], "single-node-exec", inputs, outputs),
                                  opset_imports=[helper.make_opsetid("", opset)])
        self.session = onnxruntime.InferenceSession(model.SerializeToString(),
                                                    providers=["CPUExecutionProvider"])

    def __call__(self, x):
        import torch
        y = self.session.run(None, {self.input: np.ascontiguousarray(x.numpy(), np.float32),
                                    **self.feeds})[0]
        return torch.from_numpy(np.asarray(y, dtype=np.float32))

    def __repr__(self):
        return f"{self.op} (onnxruntime)"


class _Reader:
    def __init__(self, model, name: str):
        self.model = model
        self.name = name
        _onnx()
        from onnx import numpy_helper
        opsets = {o.domain: o.version for o in model.opset_import}
        self.opset = opsets.get("", opsets.get("ai.onnx", 0))
        if self.opset < MIN_OPSET:
            raise ModelFileError(f"model {name} uses ONNX opset {self.opset}; hwgen reads opsets "
                                 f"{MIN_OPSET} and newer: export again with opset_version>="
                                 f"{MIN_OPSET}.")
        graph = model.graph
        self.consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.qconsts: dict[str, _QConst] = {}
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise UnsupportedOpError(f"model {name} has {len(inputs)} inputs "
                                     f"({', '.join(i.name for i in inputs)}); hwgen compiles "
                                     f"models with one input tensor.")
        if len(graph.output) != 1:
            raise UnsupportedOpError(f"model {name} has {len(graph.output)} outputs; hwgen "
                                     f"compiles models with one output tensor.")
        dims = inputs[0].type.tensor_type.shape.dim
        shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        if len(shape) not in (2, 4) or None in shape[1:]:
            raise UnsupportedOpError(f"model {name}: input '{inputs[0].name}' has shape "
                                     f"{shape}; hwgen needs [N, features] or [N, C, H, W] with "
                                     f"fixed sizes after the batch dimension.")
        self.input_shape = tuple(int(d) for d in shape[1:])
        self.batch = shape[0]
        self.input_name = self.running = inputs[0].name
        self.last = ""
        # The running tensor's shape for one sample, as ONNX has it, and as the IR evaluates it:
        # after a Flatten (or a Transpose of size-1 axes) of a feature map the IR keeps the map
        # until the next linear layer, so only per-tensor ops may come in between.
        self.shape = self.ir_shape = self.input_shape
        self.prev = "the graph input"
        self.nodes: list = []
        self.tensors: dict[str, str] = {}

    # -- helpers ---------------------------------------------------------------------------

    def where(self, node) -> str:
        name = f"{node.op_type} node '{_label(node)}'"
        inputs = [n for n in node.input if n]
        return name if all(n in self.consts for n in inputs) else f"{name} (after {self.prev})"

    def const(self, node, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            raise UnsupportedOpError(f"{self.where(node)}: its {what} '{name}' is computed from "
                                     f"the input, not a constant; hwgen needs it constant.")
        return self.consts[name]

    def quantized(self, node, name: str) -> _QConst:
        if name not in self.qconsts:
            raise QuantizationError(f"{self.where(node)}: its weight '{name}' is not quantized "
                                    f"(no Quant or BipolarQuant node on it, or one that reaches "
                                    f"it through an op other than {', '.join(LAYOUT)}); "
                                    f"quantize the weights (Brevitas: QuantLinear / "
                                    f"QuantConv2d).")
        return self.qconsts[name]

    def float_op(self, node, index: int = 0):
        if len([o for o in node.output if o]) != 1:
            raise UnsupportedOpError(f"{self.where(node)}: uses more than one output; "
                                     f"export the model in inference mode.")
        self.nodes.append(ir.FloatOp(_label(node),
                                     _Runtime(node, index, self.consts, self.opset), (ir.X,)))

    # -- the walk --------------------------------------------------------------------------

    def sorted_nodes(self) -> list:
        """The nodes in a topological order (ONNX requires one, not every writer keeps it),
        stable where the file's order already is one."""
        nodes = list(self.model.graph.node)
        ready = set(self.consts) | {i.name for i in self.model.graph.input} | {""}
        done, order = [False] * len(nodes), []
        while len(order) < len(nodes):
            progress = False
            for k, node in enumerate(nodes):
                if not done[k] and all(n in ready for n in node.input):
                    done[k] = progress = True
                    order.append(node)
                    ready.update(node.output)
            if not progress:
                node = next(n for k, n in enumerate(nodes) if not done[k])
                missing = next(n for n in node.input if n not in ready)
                raise ModelFileError(f"model {self.name}: {node.op_type} node '{_label(node)}' "
                                     f"reads '{missing}', which no node writes (or a cycle); "
                                     f"the ONNX graph is broken.")
        return order

    def run(self) -> ir.Graph:
        for node in self.sorted_nodes():
            if node.domain and node.domain not in CUSTOM_DOMAINS and node.domain != "ai.onnx":
                raise UnsupportedOpError(f"{node.op_type} node '{_label(node)}' is in domain "
                                         f"'{node.domain}', which hwgen does not know "
                                         f"(QONNX custom ops are in "
                                         f"'qonnx.custom_op.general').")
            inputs = [name for name in node.input if name]
            if all(name in self.consts for name in inputs):
                self.fold(node)
                continue
            if self.running not in inputs:
                continue  # not on the chain (yet): checked at the end
            others = [n for n in inputs if n != self.running and n not in self.consts]
            if others:
                raise UnsupportedOpError(
                    f"{self.where(node)} reads '{self.running}' and '{others[0]}', which is "
                    f"computed from the input too; hwgen compiles chains of layers (no "
                    f"branches or residual connections).")
            self.lower(node)
            self.prev = f"{node.op_type} node '{_label(node)}'"
            self.running = node.output[0]
            self.last = _label(node)
            self.tensors[self.last] = self.running
        output = self.model.graph.output[0].name
        if output != self.running:
            stuck = next((n for n in self.model.graph.node
                          if any(i == self.running for i in n.input)), None)
            hint = (f"; {stuck.op_type} node '{_label(stuck)}' reads it" if stuck else "")
            raise UnsupportedOpError(f"model {self.name}: the chain from the input ends at "
                                     f"'{self.running}' (after {self.prev}), not at the output "
                                     f"'{output}'{hint}; hwgen compiles one chain of layers.")
        # The names of the IR's source nodes, and the tensors they write (for the reference).
        return ir.Graph(name=self.name, input_shape=self.input_shape, nodes=self.nodes,
                        output=self.last, meta={"format": "qonnx", "tensors": self.tensors,
                                                "input_tensor": self.input_name})

    def fold(self, node):
        op = node.op_type
        a = _attrs(node)
        if op == "Quant":
            x, scale, zero, bits = (self.consts[n] for n in node.input[:4])
            self.check_zero(node, zero)
            bits, (signed, narrow) = self.bit_width(node, bits, 32), self.sign(node, a)
            self.check_rounding(node, a)
            s = np.broadcast_to(np.asarray(scale, np.float32), np.shape(x))
            if bits == 1 and signed:
                q = np.where(np.asarray(x, np.float32) / s >= 0, 1.0, -1.0)
                self.qconsts[node.output[0]] = _QConst(q, s, 1, True, False, bipolar=True)
            else:
                q = _int_quant(x, scale, bits, signed, narrow)
                self.qconsts[node.output[0]] = _QConst(q, s, bits, signed, narrow)
            self.consts[node.output[0]] = (q * s).astype(np.float32)
            return
        if op == "BipolarQuant":
            x, scale = (self.consts[n] for n in node.input[:2])
            s = np.broadcast_to(np.asarray(scale, np.float32), np.shape(x))
            q = np.where(np.asarray(x, np.float32) >= 0, 1.0, -1.0)
            self.qconsts[node.output[0]] = _QConst(q, s, 1, True, False, bipolar=True)
            self.consts[node.output[0]] = (q * s).astype(np.float32)
            return
        if node.domain in CUSTOM_DOMAINS:
            raise UnsupportedOpError(f"{self.where(node)} (a custom op on constants) is not "
                                     f"supported; hwgen supports {SUPPORTED}.")
        from onnx.reference import ReferenceEvaluator
        feeds = {n: self.consts[n] for n in node.input if n}
        try:
            outs = ReferenceEvaluator(node).run(None, feeds)
        except Exception as error:
            raise UnsupportedOpError(f"{self.where(node)} on constants could not be evaluated "
                                     f"({type(error).__name__}: {error}).") from error
        for name, value in zip(node.output, outs, strict=False):
            self.consts[name] = np.asarray(value)
        source = node.input[0] if node.input else ""
        if op in LAYOUT and source in self.qconsts:
            # The integers and their scales move with the values.
            qc = self.qconsts[source]
            moved = []
            for part in (qc.q, qc.scale):
                feeds[source] = np.ascontiguousarray(part, np.float32)
                moved.append(np.asarray(ReferenceEvaluator(node).run(None, feeds)[0]))
            self.qconsts[node.output[0]] = _QConst(*moved, qc.bits, qc.signed, qc.narrow,
                                                   qc.bipolar)

    def check_zero(self, node, zero):
        if np.any(np.asarray(zero) != 0):
            raise QuantizationError(f"{self.where(node)}: zero point {np.asarray(zero)} is not 0; "
                                    f"hwgen needs symmetric quantizers (zero point 0).")

    def check_rounding(self, node, a):
        mode = _text(a.get("rounding_mode", "ROUND")).upper()
        if mode not in ("ROUND", "HALF_EVEN"):
            raise QuantizationError(f"{self.where(node)}: rounding mode {mode}; hwgen's "
                                    f"quantizers round half to even (ROUND).")

    def bit_width(self, node, bits, most: int = 16) -> int:
        """A quantizer's bit width: at most 16 on the data (hardware), 32 on constants
        (biases)."""
        b = _scalar(bits, "bit width", self.where(node))
        if b != int(b) or b < 1:
            raise QuantizationError(f"{self.where(node)}: bit width {b} is not a positive "
                                    f"integer.")
        if b > most:
            raise QuantizationError(f"{self.where(node)}: {int(b)}-bit "
                                    f"{'activations' if most == 16 else 'constants'}; hwgen "
                                    f"takes at most {most} bits here: quantize to fewer.")
        return int(b)

    def sign(self, node, a) -> tuple[bool, bool]:
        """``signed`` and ``narrow`` of a ``Quant`` (required attributes, as in qonnx)."""
        missing = [k for k in ("signed", "narrow") if k not in a]
        if missing:
            raise QuantizationError(f"{self.where(node)}: no '{missing[0]}' attribute; QONNX's "
                                    f"Quant needs signed and narrow (Brevitas writes both).")
        return bool(a["signed"]), bool(a["narrow"])

    def lower(self, node):
        op = node.op_type
        a = _attrs(node)
        name = _label(node)
        where = self.where(node)
        if op in ("Quant", "BipolarQuant"):
            if node.input[0] != self.running:
                raise UnsupportedOpError(f"{where}: its scale or bit width is computed from the "
                                         f"input; hwgen needs constants.")
            scale = _scalar(self.const(node, node.input[1], "scale"), "scale", where)
            if scale <= 0:
                raise QuantizationError(f"{where}: scale {scale} is not positive.")
            if op == "BipolarQuant":
                quant = ir.Quant(name, 1, False, False, scale, bipolar=True)
            else:
                self.check_zero(node, self.const(node, node.input[2], "zero point"))
                self.check_rounding(node, a)
                bits = self.bit_width(node, self.const(node, node.input[3], "bit width"))
                signed, narrow = self.sign(node, a)
                if bits == 1 and signed:  # qonnx: a 1-bit signed Quant is bipolar
                    quant = ir.Quant(name, 1, False, False, scale, bipolar=True)
                else:
                    quant = ir.Quant(name, bits, signed, narrow, scale)
            self.nodes.append(quant)
        elif op == "MultiThreshold":
            self.multi_threshold(node, a, name, where)
        elif op in ("Gemm", "MatMul"):
            self.linear(node, a, where)
        elif op == "Conv":
            self.conv(node, a, where)
        elif op == "MaxPool":
            self.max_pool(node, a, where)
        elif op in FLOAT:
            if op == "BatchNormalization" and a.get("training_mode", 0):
                raise UnsupportedOpError(f"{where} is in training mode; export the model with "
                                         f"model.eval().")
            index = list(node.input).index(self.running)
            if op in ("Sub", "Div") and index != 0:
                raise UnsupportedOpError(f"{where}: the input is the second operand; hwgen "
                                         f"maps constant {op.lower()}s of the form x {op} c.")
            if op in ("BatchNormalization", "Clip") and index != 0:
                raise UnsupportedOpError(f"{where}: its parameters come from the input.")
            for i, other in enumerate(node.input):
                if other and i != index:
                    self.check_constant(node, other, where)
            self.float_op(node, index)
        elif op in ("Flatten", "Reshape"):
            self.flatten(node, a, where)
        elif op == "Transpose":
            full = ("N", *self.shape)
            perm = list(a.get("perm", range(len(full))[::-1]))
            moved = [full[p] for p in perm]
            if perm[0] != 0 or [d for d in moved if d != 1] != [d for d in full if d != 1]:
                raise UnsupportedOpError(f"{where}: permutation {perm} of shape {list(full)} "
                                         f"moves data; hwgen supports transposes that only "
                                         f"move size-1 axes.")
            self.shape = tuple(moved[1:])
        elif op == "Identity":
            pass
        elif op == "Dropout":
            mode = node.input[2] if len(node.input) > 2 and node.input[2] else None
            if mode and np.any(self.const(node, mode, "training_mode")):
                raise UnsupportedOpError(f"{where} is in training mode; export the model with "
                                         f"model.eval().")
        else:
            raise UnsupportedOpError(f"{where}: op type {op} is not supported; hwgen supports "
                                     f"{SUPPORTED}.")

    def multi_threshold(self, node, a, name, where):
        """``out_scale * #{k: x >= T[c, k]} + out_bias``: a quantizer whose levels start at
        its data type's lowest (``out_bias = lo * out_scale``), or a bipolar one."""
        if node.input[0] != self.running:
            raise UnsupportedOpError(f"{where}: its thresholds come from the input.")
        # Kept in their own type: qonnx compares in it (float64 thresholds in float64).
        t = np.asarray(self.const(node, node.input[1], "thresholds"))
        if not np.issubdtype(t.dtype, np.floating):
            t = t.astype(np.float32)
        layout = _text(a.get("data_layout", "NCHW"))
        if layout not in ("NCHW", "NC"):
            raise UnsupportedOpError(f"{where}: data layout {layout}; hwgen reads NCHW models "
                                     f"(channels on axis 1).")
        c = self.shape[0]
        if t.ndim != 2 or t.shape[0] not in (1, c):
            raise UnsupportedOpError(f"{where}: thresholds of shape {list(t.shape)}; QONNX "
                                     f"needs [{c} or 1, steps] for {c} channels.")
        if t.shape[0] != 1 and self.shape != self.ir_shape:
            raise UnsupportedOpError(self.not_per_channel(where, "per-feature thresholds"))
        dtype = _text(a.get("out_dtype", ""))
        out_scale, out_bias = float(a.get("out_scale", 1.0)), float(a.get("out_bias", 0.0))
        kind = dtype.rstrip("0123456789")
        bits = int(dtype[len(kind):] or 1)
        if dtype == "BIPOLAR" and t.shape[1] == 1 and out_scale > 0 and \
                out_bias == -out_scale / 2:
            quant = ir.Quant(name, 1, False, False, out_scale / 2, bipolar=True, thresholds=t)
        elif kind in ("INT", "UINT") and 1 <= bits <= 16 and out_scale > 0:
            lo, hi = ir.int_range(bits, kind == "INT")
            # FINN writes signed narrow ranges (from -2^(b-1) + 1) as well.
            narrow = kind == "INT" and out_bias == (lo + 1) * out_scale
            if out_bias != (lo + narrow) * out_scale or t.shape[1] > hi - lo - narrow:
                raise QuantizationError(
                    f"{where}: out_bias {out_bias} and {t.shape[1]} thresholds do not give "
                    f"{dtype} levels from its lowest ({lo} x out_scale {out_scale}); hwgen "
                    f"needs out_bias = {lo * out_scale}"
                    + (f" (or {(lo + 1) * out_scale}, narrow)" if kind == "INT" else "") + ".")
            quant = ir.Quant(name, bits, kind == "INT", narrow, out_scale, thresholds=t)
        else:
            raise QuantizationError(f"{where}: out_dtype '{dtype}', out_scale {out_scale}, "
                                    f"out_bias {out_bias}; hwgen maps INTn/UINTn outputs of 1 to "
                                    f"16 bits with a positive out_scale, and BIPOLAR with one "
                                    f"threshold, out_bias = -out_scale/2.")
        self.nodes.append(quant)

    def not_per_channel(self, where, what) -> str:
        return (f"{where}: {what} after the feature map {list(self.ir_shape)} was flattened "
                f"(or transposed) to {list(self.shape)}; hwgen applies the float ops between a "
                f"convolution and its quantizer per channel of the map: apply it before the "
                f"Flatten.")

    def check_constant(self, node, name, where):
        """A float op's constant operand: a scalar, or one value per channel (feature) of the
        running tensor, shaped so that ONNX broadcasts it along that axis."""
        value = np.asarray(self.const(node, name, "operand"))
        batch_norm = (node.op_type == "BatchNormalization" and value.shape == self.shape[:1]
                      and self.shape == self.ir_shape)
        if value.size == 1 or batch_norm:
            return
        if self.shape != self.ir_shape:
            raise UnsupportedOpError(self.not_per_channel(where, f"constant '{name}' of shape "
                                                                 f"{list(value.shape)}"))
        c = self.shape[0]
        fits = ((c, 1, 1), (1, c, 1, 1)) if len(self.shape) == 3 else ((c,), (1, c))
        if node.op_type == "Clip" or value.shape not in fits:
            raise UnsupportedOpError(f"{where}: constant '{name}' of shape {list(value.shape)} on "
                                     f"[N, {', '.join(map(str, self.shape))}] is not one value "
                                     f"per channel; hwgen needs a scalar or a "
                                     f"{list(fits[0])} constant.")

    def linear(self, node, a, where):
        if len(self.shape) != 1:
            raise UnsupportedOpError(f"{where} gets a feature map {list(self.shape)}; flatten "
                                     f"it first (Flatten or Reshape to [N, -1]).")
        if node.input[0] != self.running:
            raise UnsupportedOpError(f"{where}: the input must be the first operand.")
        w = self.quantized(node, node.input[1])
        q, scale = np.asarray(w.q), np.asarray(w.scale)
        bias = None
        if node.op_type == "Gemm":
            if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or \
                    (len(node.input) > 2 and node.input[2] and a.get("beta", 1.0) != 1.0):
                raise UnsupportedOpError(f"{where}: transA, alpha or beta other than "
                                         f"(0, 1, 1); hwgen maps y = x @ W.T + b.")
            if not a.get("transB", 0):
                q, scale = q.T, scale.T
            if len(node.input) > 2 and node.input[2]:
                bias = self.const(node, node.input[2], "bias")
        else:
            q, scale = q.T, scale.T
        if q.ndim != 2 or q.shape[1] != self.shape[0]:
            raise UnsupportedOpError(f"{where}: weight of shape {list(q.shape)} does not take "
                                     f"{self.shape[0]} features.")
        name = _label(node)
        self.nodes.append(ir.Linear(name, q.astype(np.int64), self.row_scale(scale, where),
                                    w.bits, w.signed, w.narrow, weight_bipolar=w.bipolar))
        self.shape = self.ir_shape = (q.shape[0],)
        if bias is not None:
            self.add_bias(node, name, bias.reshape(-1))

    def row_scale(self, scale, where):
        """The weight scale of ``[out, ...]`` weights: one number, or one per output channel."""
        rows = scale.reshape(len(scale), -1)
        if not np.all(rows == rows[:, :1]):
            raise QuantizationError(
                f"{where}: the weight scale varies along the input features; hwgen takes one "
                f"scale per tensor or per output channel.")
        per_row = rows[:, 0].astype(np.float64)
        return float(per_row[0]) if np.all(per_row == per_row[0]) else per_row

    def add_bias(self, node, name, bias):
        from onnx import helper
        const = f"{name}.bias"
        shape = [1, -1, 1, 1] if len(self.shape) == 3 else [1, -1]
        self.consts[const] = np.asarray(bias, np.float32).reshape(shape)
        add = helper.make_node("Add", [f"{name}.out", const], [f"{name}.biased"],
                               name=f"{name}.bias")
        self.nodes.append(ir.FloatOp(f"{name}.bias", _Runtime(add, 0, self.consts, self.opset),
                                     (ir.X,)))

    def need_map(self, where):
        if len(self.shape) != 3 or self.shape != self.ir_shape:
            raise UnsupportedOpError(f"{where} gets [N, {', '.join(map(str, self.shape))}], not "
                                     f"the feature map [N, C, H, W] hwgen streams.")

    def conv(self, node, a, where):
        self.need_map(where)
        if node.input[0] != self.running:
            raise UnsupportedOpError(f"{where}: the input must be the first operand.")
        w = self.quantized(node, node.input[1])
        q = np.asarray(w.q)
        if a.get("group", 1) != 1 or any(d != 1 for d in a.get("dilations", [1, 1])):
            raise UnsupportedOpError(f"{where}: group {a.get('group', 1)}, dilations "
                                     f"{a.get('dilations', [1, 1])}; hwgen supports ordinary "
                                     f"convolutions (group 1, dilation 1).")
        c, h, wd = self.shape
        if q.ndim != 4 or q.shape[1] != c:
            raise UnsupportedOpError(f"{where}: weight of shape {list(q.shape)} does not take "
                                     f"{c} channels.")
        kernel = tuple(int(k) for k in q.shape[2:])
        stride = tuple(int(s) for s in a.get("strides", [1, 1]))
        pads = self.pads(node, a, kernel, stride, (h, wd), where)
        name = _label(node)
        if any(pads):
            self.nodes.append(ir.Pad(f"{name}.pad", pads, 0.0))
            h, wd = h + pads[0] + pads[2], wd + pads[1] + pads[3]
        scale = self.row_scale(np.asarray(w.scale).reshape(len(q), -1), where)
        self.nodes.append(ir.Conv(name, q.astype(np.int64), scale, w.bits, w.signed, w.narrow,
                                  stride, weight_bipolar=w.bipolar))
        self.shape = self.ir_shape = (q.shape[0], (h - kernel[0]) // stride[0] + 1,
                                      (wd - kernel[1]) // stride[1] + 1)
        if len(node.input) > 2 and node.input[2]:
            self.add_bias(node, name, self.const(node, node.input[2], "bias"))

    def pads(self, node, a, kernel, stride, size, where) -> tuple:
        """``(top, left, bottom, right)`` from ``pads`` or ``auto_pad``."""
        auto = _text(a.get("auto_pad", "NOTSET"))
        if auto in ("NOTSET", "VALID"):
            p = list(a.get("pads", [0, 0, 0, 0])) if auto == "NOTSET" else [0, 0, 0, 0]
            if len(p) != 4:
                raise UnsupportedOpError(f"{where}: pads {p} are not 2-D.")
            return (int(p[0]), int(p[1]), int(p[2]), int(p[3]))
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            total = [max((-(-n // s) - 1) * s + k - n, 0)
                     for n, k, s in zip(size, kernel, stride, strict=True)]
            small = [t // 2 for t in total]
            big = [t - t // 2 for t in total]
            begin, end = (small, big) if auto == "SAME_UPPER" else (big, small)
            return (begin[0], begin[1], end[0], end[1])
        raise UnsupportedOpError(f"{where}: auto_pad {auto} is not supported.")

    def max_pool(self, node, a, where):
        self.need_map(where)
        if len([o for o in node.output if o]) != 1:
            raise UnsupportedOpError(f"{where}: its indices output is used; hwgen's max-pool "
                                     f"gives values only.")
        if a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1, 1])):
            raise UnsupportedOpError(f"{where}: ceil_mode or dilation; hwgen supports floor "
                                     f"mode without dilation.")
        kernel = tuple(int(k) for k in a["kernel_shape"])
        stride = tuple(int(s) for s in a.get("strides", [1, 1]))
        c, h, w = self.shape
        pads = self.pads(node, a, kernel, stride, (h, w), where)
        name = _label(node)
        if any(pads):
            self.nodes.append(ir.Pad(f"{name}.pad", pads, float("-inf")))
            h, w = h + pads[0] + pads[2], w + pads[1] + pads[3]
        self.nodes.append(ir.MaxPool(name, kernel, stride))
        self.shape = self.ir_shape = (c, (h - kernel[0]) // stride[0] + 1,
                                      (w - kernel[1]) // stride[1] + 1)

    def flatten(self, node, a, where):
        n = int(np.prod(self.shape))
        if node.op_type == "Flatten":
            axis = a.get("axis", 1)
            if axis % (len(self.shape) + 1) != 1:
                raise UnsupportedOpError(f"{where}: axis {axis}; hwgen flattens everything "
                                         f"after the batch dimension (axis 1).")
        else:
            target = [int(d) for d in self.const(node, node.input[1], "shape").reshape(-1)]
            batch = (-1, 0, 1, self.batch)
            if len(target) != 2 or target[1] not in (n, -1) or target[0] not in batch:
                shape = ", ".join(map(str, self.shape))
                raise UnsupportedOpError(f"{where}: reshape of [N, {shape}] to {target}; hwgen "
                                         f"supports reshapes that flatten to [N, {n}].")
        self.shape = (n,)
