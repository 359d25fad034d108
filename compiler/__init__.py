"""hwgen.compiler: model files to dataflow graphs.

``compile_model(path)`` reads a model (a ``torch.export`` archive, or a QONNX ``.onnx`` file),
streamlines it to integer
layers, removes the neurons pruning left dead (:mod:`~hwgen.compiler.prune`) and returns the
:class:`~hwgen.compiler.dataflow.Dataflow` graph (``pe = simd = 1``; the folding pass sets the
parallelism later).
"""

from __future__ import annotations

__all__ = ["compile_model"]


def compile_model(path, *, output: str = "logits", allow_pickle: bool = False):
    """Compile the model file at ``path`` into a :class:`~hwgen.compiler.dataflow.Dataflow`.

    ``output="logits"`` ends with the last layer's integer logits; ``output="label"`` appends a
    :class:`~hwgen.compiler.dataflow.LabelSelect` (argmax, lowest index wins ties).
    ``graph.meta`` records the source format, ``logit_scale`` (float value of one logit step),
    ``layer_scales`` (per MVAU, the float value of one output step) and ``removed_neurons``
    (per MVAU, the constant output of each source neuron structured pruning removed). Pickles
    (``torch.save``) are refused unless ``allow_pickle`` (unpickling runs code: trusted files
    only).
    """
    from pathlib import Path

    from . import frontend_onnx, frontend_torch
    from .prune import remove_dead_neurons
    from .streamline import streamline

    if output not in ("logits", "label"):
        raise ValueError(f"compile_model: output={output!r} must be 'logits' or 'label'")
    if Path(path).suffix.lower() == ".onnx":
        source = frontend_onnx.read(path)
    else:
        source = frontend_torch.load(path, allow_pickle=allow_pickle)
    graph = streamline(source, output=output)
    return remove_dead_neurons(graph)
