"""The benchmark: build every example for every board, and write bench/results.{md,json}.

    ./dev python bench/run.py [--only NAME,...] [--boards BOARD,...]

A run replaces the rows it measures in bench/results.json and keeps the others; every row
records the commit and the run it came from, and pruned models are set beside their dense
twins only when both come from the same run.

For each (example, board): resources, fmax, cycles per frame, frames/s, latency, wall time per
stage, verification speed, and the same model's PyTorch CPU inference rate measured in this
run on this machine (so the ratio compares like with like). Each build runs twice; the second
is the warm-cache figure (YoWASP and Verilator caches filled by the first).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwgen.api import BuildOptions, build  # noqa: E402
from hwgen.api import _tool_versions as tool_versions  # noqa: E402


def digits_all():
    from sklearn.datasets import load_digits
    data = load_digits()
    return data.data.astype(np.float32), data.target.astype(np.int64)


def mnist_test():
    return (np.load(ROOT / "examples" / "mnist_test_x.npy").astype(np.float32),
            np.load(ROOT / "examples" / "mnist_test_y.npy"))


class Example(NamedTuple):
    model: str
    data: Callable
    #: A folding file (``--fold``) for the build; None: the compiler folds on its own.
    fold: str | None = None
    #: The boards it is built for (``--boards`` narrows them); None: all of BOARDS.
    boards: tuple | None = None


BOARDS = ["icebreaker", "ulx3s-85f"]
EXAMPLES = {
    "digits_mlp_w4a4": Example("examples/digits_mlp_w4a4.pt", digits_all),
    "digits_mlp_w4a4_pruned75": Example("examples/digits_mlp_w4a4_pruned75.pt", digits_all),
    # The same pruned model with its weights and columns kept out of block RAM (gather lanes
    # exist on ECP5 only: on iCE40 this is the build above).
    "digits_mlp_w4a4_pruned75_weights_in_logic": Example(
        "examples/digits_mlp_w4a4_pruned75.pt", digits_all, "bench/weights_in_logic.json",
        ("ulx3s-85f",)),
    # Structured pruning shrinks the layers on any board; the small one shows it.
    "digits_mlp_w4a4_neurons50": Example("examples/digits_mlp_w4a4_neurons50.pt", digits_all,
                                         boards=("icebreaker",)),
    "tfc_w1a1_mnist": Example("examples/tfc_w1a1_mnist.pt", mnist_test),
    # Convolutional networks (docs/cnn.md): W2A2, both fit the UP5K.
    "digits_cnn_w2a2": Example("examples/digits_cnn_w2a2.pt", digits_all,
                               boards=("icebreaker",)),
    "mnist_cnn_w2a2": Example("examples/mnist_cnn_w2a2.pt", mnist_test, boards=("icebreaker",)),
    # The QONNX route (docs/qonnx.md): digits_mlp_w4a4's network trained with Brevitas.
    "digits_mlp_w4a4_brevitas": Example("examples/digits_mlp_w4a4_brevitas.onnx", digits_all,
                                        boards=("icebreaker",)),
}
#: A pruned example -> its dense twin, built for the same boards in the same run.
TWINS = {"digits_mlp_w4a4_pruned75": "digits_mlp_w4a4",
         "digits_mlp_w4a4_pruned75_weights_in_logic": "digits_mlp_w4a4",
         "digits_mlp_w4a4_neurons50": "digits_mlp_w4a4"}


def torch_rate(model: Path, x: np.ndarray) -> dict | None:
    """PyTorch CPU inference of the exported model: frames/s batched and one at a time (None
    for a QONNX model: there is no PyTorch program to time)."""
    if model.suffix == ".onnx":
        return None
    import hwgen.nn  # noqa: F401  (registers the quantizer op)
    with open(model, "rb") as file:  # a file object: torch warns about a .pt path
        program = torch.export.load(file)
    module = program.module()
    user = next(n for n in program.graph.nodes if n.op == "placeholder"
                and n.name in program.graph_signature.user_inputs)
    xt = torch.from_numpy(x).reshape(-1, *user.meta["val"].shape[1:])  # e.g. [N, 1, 8, 8]
    with torch.no_grad():
        module(xt[:8])
        start = time.perf_counter()
        module(xt)
        batched = len(x) / (time.perf_counter() - start)
        n = min(len(x), 300)
        start = time.perf_counter()
        for i in range(n):
            module(xt[i:i + 1])
        single = n / (time.perf_counter() - start)
    return {"batched_fps": round(batched, 1), "batch1_fps": round(single, 1),
            "threads": torch.get_num_threads()}


def bench_one(name: str, board: str, out_root: Path) -> dict:
    model, data, fold, _ = EXAMPLES[name]
    x, y = data()
    tmp = out_root / f"{name}-{board}"
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "inputs.npy", x)
    np.save(tmp / "labels.npy", y)
    runs = []
    for attempt in ("first", "warm"):
        options = BuildOptions(board=board, out=tmp / attempt, inputs=tmp / "inputs.npy",
                               labels=tmp / "labels.npy", fold=fold and ROOT / fold)
        start = time.perf_counter()
        report = build(ROOT / model, options)
        report["total_wall_s"] = round(time.perf_counter() - start, 2)
        runs.append(report)
    warm = runs[1]
    rate = torch_rate(ROOT / model, x)
    link = dict(warm["link"], board_rate=warm["link_board_rate"],
                cost=link_cost(tmp / "warm", board, out_root))
    ver = warm["verification"]
    sim_wall = sum(p["wall_s"] for p in ver["phases"].values())
    sim_cycles = sum(p["cycles"] for p in ver["phases"].values())
    xnor_lanes = sum(layer["pe"] * layer["simd"] for layer in warm["layers"]
                     if layer.get("mode") == "xnor-popcount")
    # By where the weight memories live (block, logic or spram); gather lanes' columns count
    # as weights: they are the sparse format's indices.
    weight_bits = {}
    for layer in warm["layers"]:
        for mem in layer["memories"]:
            if mem["purpose"] in ("weights", "columns"):
                weight_bits[mem["style"]] = (weight_bits.get(mem["style"], 0)
                                             + mem["width"] * mem["depth"])
    held_out = (ROOT / model).with_suffix(".json")
    return {
        "example": name, "board": board, "device": warm["device"],
        "bound_cycles_per_frame": warm["bound_cycles_per_frame"],
        "bound_ratio": warm["bound_ratio"], "bandwidth_bound": warm["bandwidth_bound"],
        "xnor_lanes": xnor_lanes, "weight_bits": weight_bits,
        "sparsity": [layer.get("sparsity") for layer in warm["layers"] if "sparsity" in layer],
        "held_out_accuracy": (json.loads(held_out.read_text()).get("test_accuracy")
                              if held_out.exists() else None),
        "lc_per_xnor_lane": (round(warm["resources"]["lut"]["used"] / xnor_lanes, 2)
                             if xnor_lanes else None),
        "resources": warm["resources"], "fmax_mhz": warm["fmax_mhz"],
        "clock_mhz": warm["clock_mhz"], "clock": warm["clock"], "link": link,
        "cycles_per_frame": warm["cycles_per_frame"],
        "cycles_per_frame_measured": ver["cycles_per_frame_measured"],
        "window_bound_cycles_per_frame": warm.get("window_bound_cycles_per_frame"),
        "layers": [{k: layer[k] for k in ("name", "type", "cycles", "lanes_in", "lanes_out")}
                   for layer in warm["layers"]],
        "latency_cycles": warm["latency_cycles"], "fps": warm["fps"],
        "fps_at_fmax": warm["fps_at_fmax"], "accuracy": warm.get("accuracy"),
        "vectors": ver["vectors"], "mismatches": ver["mismatches"],
        "stall_fraction": ver["stall_fraction"], "agreement": warm["agreement"],
        "wall_s": {"first": runs[0]["wall_s"], "warm": warm["wall_s"]},
        "total_wall_s": {"first": runs[0]["total_wall_s"], "warm": warm["total_wall_s"]},
        "verify_wall_s": warm["wall_s"]["simulate"],
        "vectors_per_s": round(ver["vectors"] * len(ver["phases"]) / sim_wall, 1),
        "sim_cycles_per_s": round(sim_cycles / sim_wall),
        "torch": rate,
        "fps_vs_torch_batch1": rate and round(warm["fps"] / rate["batch1_fps"], 2),
        "fps_vs_torch_batched": rate and round(warm["fps"] / rate["batched_fps"], 3),
    }


def link_cost(warm_dir: Path, board: str, out_root: Path) -> dict:
    """What the host link costs on its own: a board top around the minimal XorAccelerator with
    the example's frame format, built for the board (link, UART, status LED, and about
    ``in_width + out_width`` cells of stand-in)."""
    from hwgen.boards.build import build as board_build
    from hwgen.boards.protocol import LinkDescription
    from hwgen.boards.standin import XorAccelerator
    from hwgen.boards.top import BoardTop
    fmt = LinkDescription.read(warm_dir).format
    acc = XorAccelerator(fmt.in_width, fmt.out_width, fmt.beats_in, fmt.beats_out)
    top = BoardTop(acc, fmt.beats_in, fmt.beats_out, board)
    result = board_build(top, board, out_root / f"link-{board}-{fmt.in_width}x{fmt.beats_in}")
    return {"lut": result.resources["lut"], "ff": result.resources["ff"],
            "bram": result.resources["bram"], "stand_in_width": fmt.in_width + fmt.out_width}


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def bench_verify(name: str, board: str, out_root: Path) -> dict:
    """``hwgen verify`` (no synthesis) of every vector: cold (empty hwgen and ccache caches,
    so the simulator is compiled) and warm (the same command again)."""
    import os
    import shutil

    model, data, fold, _ = EXAMPLES[name]
    x, _ = data()
    tmp = out_root / f"{name}-{board}-verify"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "inputs.npy", x)
    saved = {k: os.environ.get(k) for k in ("HWGEN_CACHE_DIR", "CCACHE_DIR")}
    os.environ["HWGEN_CACHE_DIR"] = str(tmp / "hwgen-cache")
    os.environ["CCACHE_DIR"] = str(tmp / "ccache")
    runs = {}
    try:
        for attempt in ("cold", "warm"):
            options = BuildOptions(board=board, out=tmp / attempt, inputs=tmp / "inputs.npy",
                                   bitstream=False, fold=fold and ROOT / fold)
            start = time.perf_counter()
            report = build(ROOT / model, options)
            runs[attempt] = {"total_s": round(time.perf_counter() - start, 2),
                             "simulate_s": report["wall_s"]["simulate"],
                             "simulator_built": report["verification"]["simulator_built"],
                             "vectors": report["verification"]["vectors"]}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return runs


def _twins(rows: list) -> list[str]:
    """The pruned examples beside their dense twins: ratios dense / pruned (above 1: the
    pruned build is better)."""
    by = {(r["example"], r["board"], r.get("run")): r for r in rows}
    pairs = [(r, by[(TWINS[r["example"]], r["board"], r.get("run"))]) for r in rows
             if r["example"] in TWINS and (TWINS[r["example"]], r["board"], r.get("run")) in by]
    if not pairs:
        return []
    lines = ["", "## Pruned models beside their dense twins", "",
             "Both built for the same board in the same run. Each cell is pruned / dense, then the "
             "gain dense / pruned (above 1 is better for the pruned model). *weight bits in "
             "block RAM* counts the weight memories (with gather lanes' columns, the sparse "
             "format's indices) the memory plan puts in block RAM or "
             "SPRAM; weights in logic are LUT ROMs. Accuracy: on every vector verified / on the "
             "360 held-out digits ([docs/pruning.md](../docs/pruning.md)).", "",
             "| pruned | twin | board | density | cycles/frame | LC | weight bits in block "
             "RAM | block RAMs (all uses) | LC x cycles | accuracy (pruned, dense) |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def cell(p, d):
        return f"{p:,} / {d:,} ({d / p:.2f}x)" if p else f"{p:,} / {d:,}"

    def accuracy(r):
        golden = f"{r['accuracy']['golden'] * 100:.2f}%" if r.get("accuracy") else "-"
        held = f"{r['held_out_accuracy'] * 100:.2f}%" if r.get("held_out_accuracy") else "-"
        return f"{golden} / {held}"

    for p, d in pairs:
        def bram_bits(r):
            return sum(v for k, v in r["weight_bits"].items() if k != "logic")
        density = [s["density"] for s in p.get("sparsity", []) if s]
        lc_p, lc_d = p["resources"]["lut"]["used"], d["resources"]["lut"]["used"]
        lines.append(
            f"| {p['example']} | {d['example']} | {p['board']} | "
            f"{', '.join(f'{x:.0%}' for x in density)} | "
            f"{cell(p['cycles_per_frame'], d['cycles_per_frame'])} | {cell(lc_p, lc_d)} | "
            f"{cell(bram_bits(p), bram_bits(d))} | "
            f"{cell(p['resources']['bram']['used'], d['resources']['bram']['used'])} | "
            f"{cell(lc_p * p['cycles_per_frame'], lc_d * d['cycles_per_frame'])} | "
            f"{accuracy(p)}, {accuracy(d)} |")
    return lines


def _cnns(rows: list) -> list[str]:
    """The convolutional networks: the cycle formula against the simulation, the window
    bound, and where the cycles go."""
    cnns = [r for r in rows if r.get("window_bound_cycles_per_frame")]
    if not cnns:
        return []
    lines = ["", "## Convolutional networks", "",
             "*measured* is the spacing of frames in the Verilator run once the pipeline is "
             "full (every frame, both runs), *formula* the slowest layer's `cycles` "
             "([docs/cnn.md](../docs/cnn.md)). The *window bound* is the fewest cycles any "
             "folding allows: a sliding window sends at most one pixel's channels per cycle.",
             "", "| example | board | LC | BRAM | fmax MHz | clock MHz | cycles/frame "
             "(formula) | measured | measured / formula | window bound | frames/s | "
             "accuracy | slowest layers |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in cnns:
        res = r["resources"]
        measured = r["cycles_per_frame_measured"]
        ratio = f"{measured / r['cycles_per_frame']:.4f}" if isinstance(measured, int) else "-"
        slowest = [f"{layer['name']} ({layer['cycles']})" for layer in r.get("layers", [])
                   if layer["cycles"] == r["cycles_per_frame"]]
        acc = f"{r['accuracy']['golden'] * 100:.2f}%" if r["accuracy"] else "-"
        lines.append(
            f"| {r['example']} | {r['board']} | {res['lut']['used']}/{res['lut']['total']} | "
            f"{res['bram']['used']}/{res['bram']['total']} | {r['fmax_mhz']:.1f} | "
            f"{r['clock_mhz']:.0f} | {r['cycles_per_frame']} | {measured} | {ratio} | "
            f"{r['window_bound_cycles_per_frame']} | {r['fps']:,.0f} | {acc} | "
            f"{', '.join(slowest)} |")
    return lines


def _commits(rows: list) -> str:
    """Which commits (and dates) the rows were measured on."""
    seen = {}
    for r in rows:
        seen.setdefault((r["commit"], r["date"]), []).append(f"{r['example']} on {r['board']}")
    if len(seen) == 1:
        (commit, date), = seen
        return f"commit `{commit}`, {date}"
    return "; ".join(f"commit `{c}` ({d}: {', '.join(what)})" for (c, d), what in seen.items())


def markdown(results: dict) -> str:
    from hwgen.boards.system import BAD_REQUESTS
    lines = ["# hwgen benchmark", "",
             f"Rows from {_commits(results['rows'])}, on {results['machine']}.", "",
             "Written by `./dev python bench/run.py`. Each build runs twice; *warm* is the "
             "second run (tool caches filled). PyTorch figures are the same exported model on "
             "this machine's CPU in the same run. Verification streams every vector through "
             "the Verilog twice (back to back, then with `ready` held low on a random third of "
             "the cycles); mismatches count every output integer of both runs.", "",
             "Accuracy is over every vector verified: for the digits all 1797, 1437 of which "
             "the model was trained on; its accuracy on the 360 held-out digits alone is in "
             "`examples/digits_mlp_w4a4.json`. TFC-W1A1 is verified on its 1000 held-out "
             "MNIST test images (none of them trained on), and so is the MNIST CNN; the digits "
             "CNN like the digits MLP. Both runs of a build happen in one "
             "process, so the first also pays Python's imports.", "",
             "| example | board | LC | FF | BRAM | SPRAM | DSP | fmax MHz | clock MHz | "
             "cycles/frame | bound | ratio | latency cycles | frames/s | frames/s at fmax | "
             "accuracy | mismatches |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        res = r["resources"]
        acc = f"{r['accuracy']['golden'] * 100:.2f}%" if r["accuracy"] else "-"
        lines.append(
            f"| {r['example']} | {r['board']} | {res['lut']['used']}/{res['lut']['total']} | "
            f"{res['ff']['used']} | {res['bram']['used']}/{res['bram']['total']} | "
            f"{res['spram']['used']}/{res['spram']['total']} | "
            f"{res['dsp']['used']} | {r['fmax_mhz']:.1f} | {r['clock_mhz']:.0f} | "
            f"{r['cycles_per_frame']} | {r['bound_cycles_per_frame']} | "
            f"{_ratio(r['bound_ratio'])} | {r['latency_cycles']} | {r['fps']:,.0f} | "
            f"{r['fps_at_fmax']:,.0f} | {acc} | {r['mismatches']} / {r['vectors']} x2 |")
    lines += ["", "*bound* is the weight-bandwidth bound on cycles per frame, `ceil(weight bits "
              "/ bits per cycle)` with 16 bits per cycle from each of the board's block RAMs "
              "plus the word width of every weight memory in logic "
              "([docs/binarized.md](../docs/binarized.md)); *ratio* is cycles/frame over it."]
    lines += _twins(results["rows"])
    lines += _cnns(results["rows"])
    binary = [r for r in results["rows"] if r.get("xnor_lanes")]
    if binary:
        lines += ["", "## Binarized layers", "",
                  "| example | board | XNOR lanes (PE x SIMD, all layers) | LC per XNOR lane "
                  "(all logic cells of the design) | binary MACs per second at the clock |",
                  "|---|---|---|---|---|"]
        for r in binary:
            lines.append(f"| {r['example']} | {r['board']} | {r['xnor_lanes']} | "
                         f"{r['lc_per_xnor_lane']:.2f} | "
                         f"{r['bandwidth_bound']['weight_bits'] * r['fps'] / 1e9:.2f} G |")
    lines += ["", "## Host link", "",
              "The board design simulated from its UART pins (docs/host-link.md): every vector "
              "(up to 400) as a request at 4 or more clock cycles per bit plus five bad "
              "requests, then 4 frames at the board's real bit rate, which measure the link's "
              "frames/s. *link "
              "LC* is a board top around a minimal stand-in accelerator with the same frame "
              "format (link, UART, status LED, and about *stand-in* cells of stand-in); the "
              "clock is the PLL's, set from a first place-and-route.", "",
              "| example | board | clock | link LC (stand-in) | of the design | baud | request "
              "bytes on the wire | frames/s over the link | accelerator frames/s | "
              "replies checked | bad requests answered |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        link = r.get("link")
        if not link:
            continue
        cost, res = link["cost"], r["resources"]
        clock = r.get("clock") or {}
        source = ("PLL" if clock.get("source") == "pll" else "oscillator")
        bad = sum(link["bad_requests"].get(k) == v for k, v in BAD_REQUESTS.items())
        lines.append(
            f"| {r['example']} | {r['board']} | {r['clock_mhz']:.2f} MHz ({source}) | "
            f"{cost['lut']} ({cost['stand_in_width']}) | "
            f"{cost['lut'] / res['lut']['used']:.0%} | {link['baud']} | "
            f"{link['request_wire_bytes']:.1f} | {link['fps_link']:,.0f} | "
            f"{link['fps_accelerator']:,.0f} | {link['frames'] - link['mismatches']}/"
            f"{link['frames']} | {bad}/{len(link['bad_requests'])} |")
    lines += ["", "## Wall time (seconds)", "",
              "| example | board | stage | first run | warm run |", "|---|---|---|---|---|"]
    for r in results["rows"]:
        stages = [stage for stage in r["wall_s"]["warm"] if stage != "total"]
        for stage in stages:
            lines.append(f"| {r['example']} | {r['board']} | {stage} | "
                         f"{r['wall_s']['first'].get(stage, 0):.1f} | "
                         f"{r['wall_s']['warm'][stage]:.1f} |")
        lines.append(f"| {r['example']} | {r['board']} | **total** | "
                     f"{r['total_wall_s']['first']:.1f} | {r['total_wall_s']['warm']:.1f} |")
    lines += ["", "## Verification speed and PyTorch comparison", "",
              "| example | vectors | stall fraction | verify wall s (warm, both runs, incl. "
              "cached build) | vectors/s | simulated cycles/s | PyTorch CPU frames/s (batch 1 / "
              "batched) | accelerator / PyTorch batch 1 | accelerator / PyTorch batched |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        rate = r["torch"]
        cpu = (f"{rate['batch1_fps']:,.0f} / {rate['batched_fps']:,.0f} | "
               f"{r['fps_vs_torch_batch1']}x | {r['fps_vs_torch_batched']}x" if rate else
               "- (a QONNX model) | - | -")
        lines.append(
            f"| {r['example']} | {r['vectors']} | {r['stall_fraction']:.2f} | "
            f"{r['verify_wall_s']:.1f} | {r['vectors_per_s']:,.0f} | "
            f"{r['sim_cycles_per_s']:,} | {cpu} |")
    lines += ["", "## `hwgen verify` (no synthesis), every vector", "",
              "What `hwgen verify` runs (`hwgen.api.build` without the bitstream), called in "
              "this process: the `hwgen verify` command adds about 3 s of Python imports "
              "(torch). *cold*: empty simulator and compiler caches (`HWGEN_CACHE_DIR`, "
              "`CCACHE_DIR`), so Verilator's C++ build runs; *warm*: the same call again.", "",
              "| example | vectors | cold total s | cold simulate s | warm total s | warm "
              "simulate s | simulator rebuilt when warm |", "|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        v = r.get("verify")
        if v:
            lines.append(f"| {r['example']} | {v['warm']['vectors']} | "
                         f"{v['cold']['total_s']:.1f} | {v['cold']['simulate_s']:.1f} | "
                         f"{v['warm']['total_s']:.1f} | {v['warm']['simulate_s']:.1f} | "
                         f"{'yes' if v['warm']['simulator_built'] else 'no'} |")
    lines += ["", "Tool versions: " + ", ".join(f"{k} {v}" for k, v in results["tools"].items()),
              ""]
    return "\n".join(lines)


def _order(row: dict) -> tuple:
    """Rows by example, then board, in the order of EXAMPLES and BOARDS (others last)."""
    def index(items, item):
        return items.index(item) if item in items else len(items)
    return index(list(EXAMPLES), row["example"]), index(BOARDS, row["board"])


def _load(path: Path) -> dict:
    """results.json, its rows each carrying their commit and date (older files kept both once,
    for the whole run)."""
    results = json.loads(path.read_text()) if path.exists() else {"rows": []}
    for row in results["rows"]:
        row.setdefault("commit", results.get("commit", "?"))
        row.setdefault("date", results.get("date", "?"))
        row.setdefault("run", results.get("commit", "?"))
        row.setdefault("machine", results.get("machine", "?"))
        row.setdefault("tools", results.get("tools", {}))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="run only these examples (comma-separated); known: "
                        + ", ".join(EXAMPLES))
    parser.add_argument("--boards", default=",".join(BOARDS),
                        help="build for these boards (comma-separated; default %(default)s)")
    parser.add_argument("--out", default=str(ROOT / "build" / "bench"))
    parser.add_argument("--render", action="store_true",
                        help="only rewrite results.md from results.json")
    args = parser.parse_args()
    path = ROOT / "bench" / "results.json"
    if args.render:
        (ROOT / "bench" / "results.md").write_text(markdown(_load(path)))
        return
    names = list(dict.fromkeys(n.strip() for n in args.only.split(","))) if args.only \
        else list(EXAMPLES)
    boards = list(dict.fromkeys(b.strip() for b in args.boards.split(",")))
    unknown = sorted(set(names) - set(EXAMPLES))
    if unknown:
        parser.error(f"unknown examples {unknown}; known: {', '.join(EXAMPLES)}")
    from hwgen.boards.catalogue import BOARDS as CATALOGUE
    unknown = sorted(set(boards) - set(CATALOGUE))
    if unknown:
        parser.error(f"unknown boards {unknown}; known: {', '.join(CATALOGUE)}")
    # The commit whose code runs: HEAD may move while the benchmark does.
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, cwd=ROOT).stdout.strip()
    machine = (f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores, "
               f"Python {platform.python_version()}")
    run = {"run": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "commit": commit + ("+dirty" if dirty else ""), "date": time.strftime("%Y-%m-%d"),
           "machine": machine, "tools": tool_versions()}
    results = _load(path)
    # The newest run's machine and tools head the page; each row keeps its own.
    results.update(machine=machine, tools=run["tools"])
    results.pop("commit", None)
    results.pop("date", None)
    for name in names:
        for board in [b for b in boards if b in (EXAMPLES[name].boards or boards)]:
            print(f"bench: {name} on {board}", flush=True)
            row = dict(bench_one(name, board, Path(args.out)), **run)
            row["verify"] = bench_verify(name, board, Path(args.out))
            # Written after every row: an interrupted run keeps what it measured.
            results["rows"] = [r for r in results["rows"]
                               if (r["example"], r["board"]) != (name, board)] + [row]
            results["rows"].sort(key=_order)
            path.write_text(json.dumps(results, indent=2) + "\n")
            (ROOT / "bench" / "results.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
