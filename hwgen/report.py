"""The build report: ``report.json`` for machines, ``report.md`` and a summary for people."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["divergence_text", "junit_xml", "report_json", "summary", "write_report"]


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN or infinity
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def report_json(report: dict) -> str:
    """The report as strict JSON (non-finite numbers become null)."""
    return json.dumps(_plain(report), indent=2, allow_nan=False) + "\n"


def write_report(report: dict, out: Path) -> None:
    """Write ``report.json`` and ``report.md`` into ``out`` (atomically each)."""
    out = Path(out)
    for name, text in (("report.json", report_json(report)),
                       ("report.md", markdown(report))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)


def divergence_text(found: dict | None) -> str:
    """A sentence on the first divergent layer (``report["divergence"]``), or ''."""
    if not found:
        return ""
    if found["layer"] is None:
        return f" First divergence: none found layer by layer ({found['note']})."
    via = f" (or the stream plumbing before it: {', '.join(found['plumbing'])})" \
        if found["plumbing"] else ""
    first, last = found.get("waveform_frames", (0, found["frame"]))
    neuron = found.get("neuron", found["element"])
    source = f" (source neuron {neuron})" if neuron != found["element"] else ""
    if "pixel" in found:
        source = f" (pixel {found['pixel']}, channel {found['channel']})"
    return (f" First divergent layer: {found['layer']}{via}, frame {found['frame']}, element "
            f"{found['element']}{source}: expected {found['expected']}, got {found['got']} "
            f"({found['mismatches']} elements of its output differ); waveform "
            f"{found['waveform']} (input frames {first}..{last}, the run starting at frame "
            f"{first}).")


def _xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot hold (tool logs carry escapes)."""
    return "".join(c for c in str(text) if c in "\t\n\r" or " " <= c <= "\ud7ff"
                   or "\ue000" <= c <= "\ufffd" or c >= "\U00010000")


def junit_xml(report: dict, suite: str = "hwgen") -> str:
    """JUnit XML of a build or verify report: one test case per check (PyTorch vs golden, RTL
    vs golden per run, cycles per frame, latency, framing, back-pressure), with the failure
    message; a build that stopped before its checks (a bad model, a design that does not fit,
    a tool crash) is one failing case named ``build`` carrying the error."""
    import xml.etree.ElementTree as ET

    model = Path(str(report.get("model"))).stem
    checks = list(report.get("checks", []))
    if report.get("status") != "passed" and not any(not c["passed"] for c in checks):
        checks.append({"name": "build", "passed": False, "message": report.get("error")})
    root = ET.Element("testsuites")
    total = report.get("wall_s", {}).get("total", 0.0)
    node = ET.SubElement(root, "testsuite", name=suite, tests=str(len(checks)),
                         failures=str(sum(not c["passed"] for c in checks)), errors="0",
                         time=f"{total:.3f}")
    for check in checks:
        case = ET.SubElement(node, "testcase", classname=f"{suite}.{model}.{report.get('board')}",
                             name=check["name"])
        if not check["passed"]:
            message = check["message"] or "failed"
            failure = ET.SubElement(case, "failure",
                                    message=_xml_text(message.splitlines()[0][:500]))
            if check["name"].startswith("rtl_vs_golden"):
                message += divergence_text(report.get("divergence"))
            failure.text = _xml_text(message)
    if report.get("divergence"):
        props = ET.Element("properties")
        node.insert(0, props)  # the schema puts properties before the test cases
        for key, value in report["divergence"].items():
            ET.SubElement(props, "property", name=f"divergence.{key}",
                          value=_xml_text(str(value)))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _fmt(value, unit="", digits=1):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    return f"{value:,}{unit}"


def _resources_line(report) -> str:
    res = report.get("resources")
    if not res:
        return "not built (no bitstream requested)"
    # Logic cells on iCE40, LUT4s on ECP5 (what each device counts).
    lut = "LUT4" if str(report.get("device", "")).startswith("LFE5") else "LC"
    return ", ".join(f"{k.upper() if k != 'lut' else lut} {v['used']}/{v['total']}"
                     for k, v in res.items() if v["total"])


def summary(report: dict) -> str:
    """A few lines a person reads at the end of ``hwgen build``."""
    lines = []
    status = report.get("status", "?").upper()
    lines.append(f"{status}: {report.get('model')} on {report.get('board')} "
                 f"({report.get('device')})")
    if report.get("error"):
        lines.append(f"  error: {report['error']}")
    ver = report.get("verification")
    if ver:
        stall = (f"on, ready low {ver['stall_fraction']:.0%} of cycles"
                 if ver["backpressure"] else "off")
        lines.append(f"  RTL vs golden: {ver['mismatches']} mismatches over {ver['vectors']} "
                     f"vectors x {len(ver['phases'])} runs (back-pressure {stall})")
        lines.append(f"  cycles/frame: {ver['cycles_per_frame_measured']} measured, "
                     f"{ver['cycles_per_frame_formula']} by formula; latency "
                     f"{report.get('latency_cycles')} cycles measured, "
                     f"{ver.get('latency_cycles_formula')} by model")
    if report.get("window_bound_cycles_per_frame"):
        lines.append(f"  window bound: {report['window_bound_cycles_per_frame']} cycles/frame "
                     f"(the fewest any folding allows: a sliding window sends at most one "
                     f"pixel's channels per cycle); this "
                     f"design is at {report['window_bound_ratio']:.2f}x the bound")
    elif report.get("bound_cycles_per_frame"):
        bound = report["bandwidth_bound"]
        lines.append(f"  weight bandwidth bound: {report['bound_cycles_per_frame']} cycles/frame "
                     f"({bound['weight_bits']:,} weight bits / {bound['bits_per_cycle']} bits "
                     f"per cycle); this design is at {report['bound_ratio']:.2f}x the bound")
    agr = report.get("agreement")
    if agr:
        lines.append(f"  {agr.get('reference', 'PyTorch')} vs golden: "
                     f"{agr['hidden_mismatches']} hidden, "
                     f"{agr['logit_mismatches']} logit mismatches; argmax ties "
                     f"{agr['argmax_ties']}")
    q = report.get("quantization")
    if q:
        lines.append(f"  quantized after training to {q['bits']} on {q['calibration_vectors']} "
                     f"vectors: input scale {q['input']['scale']:g}, activation scales "
                     f"{', '.join(f'{v:g}' for v in q['activations']) or '-'} ({q['model']})")
    acc = report.get("accuracy")
    if acc:
        drop = (f" (float model {acc['float'] * 100:.2f}%, a drop of {acc['drop_points']:.2f} "
                f"points)" if "float" in acc else "")
        lines.append(f"  accuracy: {acc['golden'] * 100:.2f}% on {acc['labels']} labelled "
                     f"vectors{drop}")
    if report.get("resources"):
        lines.append(f"  resources: {_resources_line(report)}")
        clock = report.get("clock") or {}
        source = ""
        if clock.get("source") == "pll":
            source = f" (PLL from the {clock['oscillator_mhz']:g} MHz oscillator"
            if clock.get("first_pass_fmax_mhz"):
                source += (f", set from a first place-and-route at "
                           f"{clock['first_pass_fmax_mhz']:.1f} MHz fmax")
            source += ")"
        elif clock.get("pll_failed"):
            source = f" (the board oscillator: {clock['pll_failed']})"
        elif clock:
            source = " (the board oscillator)"
        lines.append(f"  clock {_fmt(report.get('clock_mhz'), ' MHz')}{source}, fmax "
                     f"{_fmt(report.get('fmax_mhz'), ' MHz')}; "
                     f"{_fmt(report.get('fps'), ' frames/s', 0)} "
                     f"({_fmt(report.get('fps_at_fmax'), ' at fmax', 0)})")
    link = report.get("link")
    if link:
        bad = ", ".join(f"{k} -> {v}" for k, v in link.get("bad_requests", {}).items())
        lines.append(f"  host link (simulated from the UART pins): {link['mismatches']} wrong "
                     f"of {link['frames']} frames" + (f"; bad requests {bad}" if bad else ""))
        if link.get("fps_link"):
            lines.append(f"  over the link at {link['baud']} baud: {link['fps_link']:,.0f} "
                         f"frames/s measured (the accelerator alone "
                         f"{link['fps_accelerator']:,.0f})")
    if report.get("bitstream"):
        lines.append(f"  bitstream: {report['bitstream']}")
    wall = report.get("wall_s", {})
    if wall:
        lines.append("  wall time: " + ", ".join(f"{k} {v:.1f}s" for k, v in wall.items()
                                                  if "." not in k)
                     + (" (synthesis ran alongside the simulation)"
                        if "bitstream" in wall else ""))
    lines.append(f"  report: {report.get('out')}/report.json")
    return "\n".join(lines)


def _kind(stream: dict) -> str:
    return "b" if stream.get("bipolar") else "s" if stream["signed"] else "u"


def markdown(report: dict) -> str:
    """``report.md``: the summary, then the per-layer table."""
    kind = "build" if report.get("resources") is not None else "verify"
    parts = [f"# hwgen {kind}: {Path(str(report.get('model'))).name} on {report.get('board')}",
             "", "```", summary(report), "```", ""]
    layers = report.get("layers") or []
    if layers:
        parts += ["## Layers", "",
                  "| layer | type | shape | in bits | out bits | PE | SIMD | cycles | "
                  "acc bits | memories |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for layer in layers:
            mems = "; ".join(f"{m['purpose']} {m['width']}x{m['depth']} {m['style']}"
                             f"{' (' + str(m['bram']) + ' BRAM)' if m['bram'] else ''}"
                             for m in layer["memories"]) or "-"
            shape = "x".join(map(str, layer.get("shape", []))) or f"{layer['in']['n']}"
            parts.append(
                f"| {layer['name']} | {layer['type']} | {shape} | "
                f"{layer['in']['bits']}{_kind(layer['in'])} | "
                f"{layer['out']['bits']}{_kind(layer['out'])} | "
                f"{layer.get('pe', layer['lanes_out'])} | "
                f"{layer.get('simd', layer['lanes_in'])} | {layer['cycles']} | "
                f"{layer.get('acc_bits', '-')} | {mems} |")
        parts.append("")
    sparse = [layer for layer in layers if layer.get("sparsity")]
    if sparse:
        parts += ["## Sparsity", "",
                  "| layer | source shape | neurons removed | weights removed | density | "
                  "zeros left | scheme | slots (dense) |",
                  "|---|---|---|---|---|---|---|---|"]
        for layer in sparse:
            sp = layer["sparsity"]
            removed = (f"{sp['weights_removed']} ({sp['weight_bits_removed']} bits)"
                       if sp["weights_removed"] else "0")
            parts.append(f"| {layer['name']} | {'x'.join(map(str, sp['source_shape']))} | "
                         f"{sp['neurons_removed']} | {removed} | {sp['density']:.1%} | "
                         f"{sp['zeros_left']} | {sp['scheme']} | "
                         f"{sp['slots']} ({sp['dense_slots']}) |")
        parts += ["", "Density counts the nonzero weights against every weight of the source "
                  "layer (zeros that quantization rounded count too). Neurons whose weights are "
                  "all zero have constant outputs, folded into the next layer's thresholds or "
                  "bias; neurons nothing reads are dropped; both leave the hardware. Gather "
                  "lanes multiply only the nonzero weights: *slots* counts the multiplying "
                  "slots of a frame, against a dense layer's with the same PE and SIMD "
                  "(docs/pruning.md).", ""]
    parts += ["How to read this: `cycles` is the steady-state cycles per frame of each layer "
              "(`nf * max(sf, steps)` for a dense MVAU, `max(sum(fold_lengths), sf)` for "
              "gather lanes, times the windows of a convolution; a sliding window takes "
              "`max(h*w, out_h*out_w*kh*kw) * c / lanes`); shapes are `rows x columns` for an "
              "MVAU, `h x w x c` for a map (channels-last in the stream), `windows x window "
              "x c` for a max-pool; PE and SIMD are output and input lanes; bits are "
              "`u`nsigned, `s`igned or `b`inary "
              "(1 meaning +1, 0 meaning -1); the slowest layer sets the accelerator's "
              "cycles per frame, which the simulation must measure exactly. `fps` is at the "
              "clock the bitstream runs at, `fps_at_fmax` at the fmax nextpnr reports. The weight "
              "bandwidth bound is `ceil(weight bits / bits per cycle)`, the bits per cycle "
              "counting every block RAM of the board at 16 bits plus every weight memory in "
              "logic at its width: no design that reads its weights from these stores once "
              "per frame can be faster (docs/binarized.md).", ""]
    return "\n".join(parts)
