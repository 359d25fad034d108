"""First divergence: the first layer of the generated hardware whose output differs from the
golden model.

When the accelerator's output differs from the golden model, :func:`first_divergence`
simulates prefixes of the layer chain: the accelerator cut after each layer that changes
values (MVAU, label select), with the FIFOs and width converters before it. It streams the same
input vectors through each prefix and compares the prefix's output stream with the golden
model's output of that layer. The first prefix that differs names the layer (or the stream
plumbing just before it), the frame and the element, with the expected and simulated values,
and a VCD waveform of that prefix's run is written (it opens in GTKWave or Surfer): the
failing frame and the :data:`CONTEXT` frames before it, or every frame up to it when the
failure needs a longer history to reproduce.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hwgen.compiler.dataflow import FIFO, Dataflow, WidthConverter, frame_beats

__all__ = ["CONTEXT", "first_divergence"]

#: Frames before the failing one that the waveform shows (the VCD grows by ~1.5 MB a frame
#: for the digits MLP).
CONTEXT = 2


def _simulate(prefix: Dataflow, x_int, phase, seed, waveform=None):
    from hwgen.hw.top import verilog
    from hwgen.sim.beats import pack, unpack
    from hwgen.sim.verilator import simulate

    first, last = prefix.layers[0], prefix.layers[-1]
    beats_out = frame_beats(last.n_out, last.pixels_out, last.lanes_out)
    result = simulate(verilog(prefix, name="top"), top="top",
                      in_width=first.lanes_in * first.in_bits,
                      out_width=last.lanes_out * last.out_bits,
                      inputs=pack(x_int, first.in_bits, first.lanes_in, first.pixels_in),
                      beats_out=beats_out, phases=((phase, phase == "backpressure"),),
                      seed=seed, waveform=waveform)[phase]
    return unpack(result.outputs, last.n_out, last.out_bits, last.lanes_out, last.out_signed,
                  last.pixels_out)


def first_divergence(hw_graph: Dataflow, golden_layers: list, x_int: np.ndarray,
                     out_dir: str | Path, *, phase: str = "stream", seed: int = 1) -> dict | None:
    """Find the first layer of ``hw_graph`` (the graph the hardware was generated from) whose
    simulated output differs from ``golden_layers`` (:func:`hwgen.sim.golden.run_layers` of
    the compiler's graph) on the quantized inputs ``x_int``, in the run ``phase``
    (``"stream"`` or ``"backpressure"``).

    Returns ``None`` when every prefix agrees (the divergence then depends on the full
    design's timing), else a dict: ``layer``, ``plumbing`` (FIFOs and width converters between
    it and the previous checked layer), ``frame``, ``element``, ``expected``, ``got``,
    ``mismatches`` (elements of that layer's output that differ), ``waveform`` (the VCD) and
    ``waveform_frames`` (the first and last input frame it covers; the VCD's run starts at the
    first)."""
    out_dir = Path(out_dir)
    x_int = np.asarray(x_int, dtype=np.int64)
    layers = list(hw_graph.layers)
    plumbing = []
    for i, layer in enumerate(layers):
        if isinstance(layer, (FIFO, WidthConverter)):
            plumbing.append(layer.name)
            continue
        prefix = Dataflow(hw_graph.name, hw_graph.input, layers[:i + 1], hw_graph.meta)
        expected = np.asarray(golden_layers[i], dtype=np.int64)
        got = _simulate(prefix, x_int, phase, seed)
        bad = np.argwhere(got != expected)
        if len(bad):
            frame, element = (int(v) for v in bad[0])
            waveform = out_dir / f"divergence_{layer.name}.vcd"
            start = max(0, frame - CONTEXT)
            window = _simulate(prefix, x_int[start:frame + 1], phase, seed, waveform=waveform)
            if np.array_equal(window[-1], expected[frame]):  # needs the longer history
                start = 0
                _simulate(prefix, x_int[:frame + 1], phase, seed, waveform=waveform)
            # The source's neuron where the compiler removed or reordered them; a feature
            # map's element is a pixel's channel.
            neurons = getattr(layer, "neurons", None)
            pixels = layer.pixels_out
            where = {} if pixels == 1 else {"pixel": element // (layer.n_out // pixels),
                                            "channel": element % (layer.n_out // pixels)}
            return {"layer": layer.name, "plumbing": plumbing, "frame": frame,
                    "element": element, **where,
                    "neuron": neurons[element] if neurons is not None else element,
                    "expected": int(expected[frame, element]),
                    "got": int(got[frame, element]), "mismatches": len(bad),
                    "phase": phase, "waveform": str(waveform),
                    "waveform_frames": [start, frame]}
        plumbing = []
    return None
