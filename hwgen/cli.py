"""The ``hwgen`` command line."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from hwgen.compiler.errors import HwgenError

console = Console(stderr=True, highlight=False, soft_wrap=True)

@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="hwgen")
def main():
    """hwgen compiles quantized neural networks into streaming dataflow accelerators for open
    FPGAs, proves them bit-exact against an integer golden model in Verilator, and builds
    bitstreams with an all-open toolchain.

    \b
    Start with:
      hwgen build examples/digits_mlp_w4a4.pt --board icebreaker \\
          --inputs examples/digits_test_x.npy --labels examples/digits_test_y.npy
    and in CI (no synthesis, JUnit for the test report):
      hwgen verify examples/digits_mlp_w4a4.pt --inputs examples/digits_test_x.npy \\
          --junit hwgen-junit.xml
    """


def _check_bits(ctx, param, value):
    """``--bits`` must parse before anything is built."""
    if value is not None:
        from hwgen.compiler.errors import HwgenError
        from hwgen.ptq import parse_bits
        try:
            parse_bits(value)
        except HwgenError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def _common(command):
    """The options ``build`` and ``verify`` share (both fold for the board the same way, so
    what ``verify`` checks is what ``build`` builds)."""
    options = [
        click.argument("model", type=click.Path(path_type=Path)),
        click.option("--board", "-b", default="icebreaker", show_default=True,
                     help="Target board (alias ice40 = iCEBreaker UP5K). See `hwgen boards`."),
        click.option("--out", "-o", type=click.Path(path_type=Path),
                     help="Build folder. [default: build/<model>-<board>, for verify "
                          "build/<model>-<board>-verify]"),
        click.option("--inputs", type=click.Path(path_type=Path),
                     help="Vectors to verify with: a .npy of the model's input tensors, "
                          "[N, ...], float or integer as the model takes them. Default: random "
                          "vectors over the whole input range plus all-minimum and "
                          "all-maximum."),
        click.option("--labels", type=click.Path(path_type=Path),
                     help="A .npy of N integer class labels for --inputs; adds accuracy to "
                          "the report."),
        click.option("--fold", "fold", type=click.Path(path_type=Path),
                     help='Folding overrides, JSON: {"fc0": {"pe": 4, "simd": 8}, ...}, '
                          'optionally with memory placements: "styles": {"input_buffer": '
                          '"spram"} (block or logic for weights, input_buffer, thresholds; '
                          'spram for input_buffer). "gather": true asks for gather lanes '
                          "(sparse layers on ECP5; their memories: weights, columns, frame, "
                          "thresholds; frame may be distributed). A convolution (conv0, "
                          "...) takes pe and simd too, simd dividing its input channels; a "
                          'max-pool (pool0, ...) takes {"lanes": 2}, dividing its channels. '
                          "Layers not named are folded "
                          'automatically; an entry "*": {"styles": {"weights": "logic"}} '
                          "places those memories in all of them. The chosen folding is written "
                          "to folding.json in the build folder."),
        click.option("--bits", metavar="wNaM", callback=_check_bits,
                     help="Quantize a float model after training: N-bit weights, M-bit "
                          "activations (e.g. w4a4), activation scales calibrated on "
                          "--calibrate. For a float torch.export MLP or CNN (conv2d, "
                          "linear, batch norm, ReLU, max-pool, flatten); the quantized model "
                          "is written to quantized.pt2 in the "
                          "build folder and built like any other. With --labels the report "
                          "gives the float accuracy and the drop."),
        click.option("--calibrate", type=click.Path(exists=True, dir_okay=False,
                                                     path_type=Path),
                     help="A .npy of float input vectors [N, ...] to calibrate --bits on "
                          "(a few hundred training vectors)."),
        click.option("--output", type=click.Choice(["logits", "label"]), default="logits",
                     show_default=True,
                     help="What the accelerator returns: integer logits, or the argmax "
                          "class."),
        click.option("--vectors", type=click.IntRange(min=3), default=256, show_default=True,
                     help="Number of vectors when --inputs is not given: the extreme ones "
                          "(all minimum, all maximum, and for each first-layer channel the "
                          "inputs that drive its accumulator to its bounds), then random "
                          "ones."),
        click.option("--seed", type=int, default=1, show_default=True,
                     help="Seed for random vectors, the back-pressure pattern and (for "
                          "build) place-and-route."),
        click.option("--no-backpressure", is_flag=True,
                     help="Skip the second simulation run under random back-pressure."),
        click.option("--allow-pickle", is_flag=True,
                     help="Accept a pickled nn.Module (torch.save). Unpickling runs arbitrary "
                          "code from the file: only for files you trust."),
        click.option("--inject-fault", type=click.Choice(["weight", "threshold"]), hidden=True,
                     help="Self-test: corrupt the generated hardware; verification must "
                          "fail."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _run(model, options, *, junit=None, as_json=False):
    """Run a build with progress on stderr; print the summary (or the report as JSON); write
    JUnit XML if asked, also when it fails; exit with the build's status."""
    from hwgen.api import build as run_build
    from hwgen.report import summary

    started = time.perf_counter()
    status = console.status("starting", spinner="dots")
    last = {}

    def progress(stage, what):
        if last:
            name, t0 = last["stage"], last["t0"]
            console.print(f"[green]✓[/] {name:<10} {time.perf_counter() - t0:6.1f}s")
        last.update(stage=stage, t0=time.perf_counter())
        status.update(f"{stage}: {what}")

    report, error = None, None
    with status:
        try:
            report = run_build(model, options, progress=progress)
        except HwgenError as exc:
            error, report = exc, getattr(exc, "report", None)
            console.print(f"[red]✗[/] {last.get('stage', 'start')}")
            console.print(f"[bold red]error:[/] {escape(str(exc))}")
        except Exception as exc:  # a crash: still leave JUnit/JSON behind, then the traceback
            report = getattr(exc, "report", None) or _failed_report(model, options, exc)
            _write_outputs(report, options, junit, as_json)
            raise
    if report is None:  # stopped before the report existed (e.g. an unknown board)
        report = _failed_report(model, options, error)
    _write_outputs(report, options, junit, as_json)
    if error is not None:
        sys.exit(error.exit_code)
    console.print(f"[green]✓[/] {last['stage']:<10} {time.perf_counter() - last['t0']:6.1f}s")
    if not as_json:
        click.echo(summary(report))
        click.echo(f"done in {time.perf_counter() - started:.1f}s")


def _failed_report(model, options, error) -> dict:
    return {"status": "failed", "model": str(model), "board": options.board,
            "error": str(error) or type(error).__name__}


def _write_outputs(report, options, junit, as_json):
    from hwgen.report import junit_xml, report_json
    if junit is not None:
        junit = Path(junit)
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text(junit_xml(report, suite="hwgen.build" if options.bitstream
                                   else "hwgen.verify"))
    if as_json:
        click.echo(report_json(report), nl=False)


def _options(board, out, inputs, labels, fold, bits, calibrate, output, vectors, seed,
             no_backpressure, allow_pickle, inject_fault, bitstream):
    from hwgen.api import BuildOptions
    return BuildOptions(board=board, out=out, inputs=inputs, labels=labels, fold=fold,
                        bits=bits, calibrate=calibrate, output=output, vectors=vectors,
                        seed=seed, bitstream=bitstream, backpressure=not no_backpressure,
                        fault=inject_fault, allow_pickle=allow_pickle)


def _pll_mhz(text: str, board_name: str) -> float:
    """``--clock`` as a PLL frequency, checked against what the board's PLL can make before
    any work starts."""
    import math

    from hwgen.boards.catalogue import UnknownBoardError, get_board
    from hwgen.boards.pll import PLLError, pll_output_range
    try:
        mhz = float(text)
    except ValueError:
        mhz = math.nan
    if not math.isfinite(mhz) or mhz <= 0:
        raise click.BadParameter(f"{text!r} is not auto, board or a frequency in MHz",
                                 param_hint="--clock")
    try:
        board = get_board(board_name)
        low, high = pll_output_range(board.family, board.clock_hz)
    except (UnknownBoardError, PLLError):
        return mhz  # the build reports the board problem itself
    if not low <= mhz * 1e6:
        raise click.BadParameter(f"the {board.title}'s PLL makes {low / 1e6:g} to "
                                 f"{high / 1e6:g} MHz from its {board.clock_mhz:g} MHz clock; "
                                 f"{mhz:g} MHz is below that (use --clock board for the "
                                 f"oscillator)", param_hint="--clock")
    return mhz


@main.command()
@_common
@click.option("--no-bitstream", is_flag=True,
              help="Stop after verification (no synthesis, place and route); see also "
                   "`hwgen verify`.")
@click.option("--link-vectors", type=click.IntRange(min=0), default=400, show_default=True,
              help="Vectors sent through the full-system simulation of the board design "
                   "(accelerator, host link, UART pins), plus bad requests that must be "
                   "answered with errors; a few more run at the board's real bit rate. 0 "
                   "skips it.")
@click.option("--clock", default="auto", show_default=True,
              help="What the bitstream runs at: auto (place and route once at the board's "
                   "oscillator to find fmax, then again with the PLL at 90% of it, keeping "
                   "the oscillator if that gains nothing), board (the oscillator, one pass), "
                   "or a frequency in MHz for the PLL (the highest it makes not above it; the "
                   "build fails if the design misses it).")
def build(model, no_bitstream, link_vectors, clock, **kw):
    """Compile MODEL (a torch.export .pt/.pt2 file, or a QONNX .onnx file from Brevitas'
    export_qonnx), verify it bit-exactly in Verilator, and build a bitstream for the board.

    \b
    Writes to the build folder: top.v, the bitstream, report.json (machine-readable),
    report.md, folding.json, the vectors (vectors.npy, vectors_int.npy), golden and simulated
    outputs (golden.npy, simulated.npy) and the tool logs.
    Exit status: 0 when every check passed, 1 when verification failed, 2 for a bad model,
    input or a design that does not fit.
    """
    options = _options(**kw, bitstream=not no_bitstream)
    options.link_vectors = link_vectors
    if clock not in ("auto", "board"):
        clock = _pll_mhz(clock, kw["board"])
    options.clock = clock
    _run(model, options)


@main.command()
@_common
@click.option("--junit", type=click.Path(path_type=Path),
              help="Also write JUnit XML there: one test case per check, with its failure "
                   "message (written when verification fails too).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the whole report as JSON on stdout instead of the summary.")
def verify(model, junit, as_json, **kw):
    """Compile MODEL and prove the generated hardware bit-exact, without synthesis: for CI.

    \b
    The same checks as `hwgen build`, with the folding the board's build would use:
      - PyTorch (or, for a .onnx model, qonnx's executor) vs golden model: hidden
        activations and integer logits, exactly;
      - Verilog vs golden model in Verilator: every output of every vector, back to back
        and under random back-pressure;
      - measured cycles per frame and first-frame latency vs the formulas; framing.
    On a mismatch it names the first divergent layer, the frame and the element, and
    writes a VCD waveform of that layer's run (divergence_<layer>.vcd in the build folder).
    Simulator builds are cached (see docs/ci.md), so a second run skips the C++ build.
    Exit status: 0 when every check passed, 1 when verification failed, 2 for a bad model,
    input or a design that does not fit.
    """
    if kw["out"] is None:  # its own folder: a verify must not clear a build's bitstream
        from hwgen.boards.catalogue import UnknownBoardError, get_board
        try:
            board = get_board(kw["board"]).name
        except UnknownBoardError:
            board = kw["board"]
        kw["out"] = Path("build") / f"{Path(model).stem}-{board}-verify"
    _run(model, _options(**kw, bitstream=False), junit=junit, as_json=as_json)


def _boards_table():
    """The catalogue as a rich table, one row per board, and the notes below it: aliases,
    units, and the header pins of the boards whose host link needs a USB-serial adapter."""
    from rich import box
    from rich.table import Table

    from hwgen.boards.catalogue import BOARDS
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("board", min_width=14, overflow="fold")
    table.add_column("device", overflow="fold")
    table.add_column("LUT/FF/BRAM/DSP/SPRAM", justify="right", no_wrap=True)
    table.add_column("clock\nbaud", justify="right", no_wrap=True)
    table.add_column("programmer", overflow="fold")
    table.add_column("host link", overflow="fold")
    aliases, pins = [], []
    for board in BOARDS.values():
        t = board.totals
        uart = board.uart_header
        if uart is None:
            link = f"USB serial\n[dim]{board.usb_serial}[/]"
        else:
            link = f"header pins\n[dim]TX {uart.tx}, RX {uart.rx}[/]"
            pins.append(f"  {board.name}: {uart.where}")
        if board.aliases:
            aliases.append(f"  {board.name}: {', '.join(board.aliases)}")
        table.add_row(f"[bold]{board.name}[/]\n{board.title}",
                      f"{board.device}\n[dim]{board.package}[/]",
                      "/".join(str(t.get(k, 0)) for k in ("lut", "ff", "bram", "dsp", "spram")),
                      f"{board.clock_mhz:g} MHz\n{board.baud}", board.programmer, link,
                      end_section=True)
    notes = ("Aliases, also accepted as --board:\n" + "\n".join(aliases) + "\n"
             "LUT: logic cells (iCE40) or LUT4s (ECP5); BRAM: 4 Kbit EBRs (iCE40) or 18 Kbit "
             "blocks (ECP5).\nHeader pins take a 3.3 V USB-serial adapter (its RX to TX, its "
             "TX to RX, and GND):\n" + "\n".join(pins)
             + "\nPins, status LEDs and flashing: docs/boards.md")
    return table, notes


@main.command()
def boards():
    """List the boards hwgen can build for.

    Device, resources (LUT: logic cells or LUT4s; BRAM: 4 Kbit EBRs on iCE40, 18 Kbit blocks
    on ECP5), clock, baud rate, programmer, host link and aliases. Use a name or an alias as
    --board; docs/boards.md has the pins, the status LEDs and how to flash.
    """
    # A pipe gets the whole table; a terminal gets it fitted to its width.
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    table, notes = _boards_table()
    out.print(table)
    out.print(notes)


@main.command()
@click.argument("build_dir", metavar="BUILD", type=click.Path(path_type=Path))
@click.option("--board", "-b",
              help="The board, when BUILD's report.json does not say (it must agree when it "
                   "does). See `hwgen boards`.")
@click.option("--dry-run", is_flag=True,
              help="Print the programming command and run nothing.")
def flash(build_dir, board, dry_run):
    """Program the board with the bitstream in BUILD.

    \b
    BUILD is a folder `hwgen build` wrote. Uses the board's own programming support in
    amaranth-boards: iceprog (iCEBreaker, UPduino, iCEstick), tinyprog (TinyFPGA BX),
    openFPGALoader (ULX3S) or dfu-util (OrangeCrab). A missing programmer or board is named
    with what to install or connect (docs/boards.md).
      hwgen flash build/digits_mlp_w4a4-icebreaker
      hwgen flash build/digits_mlp_w4a4-icebreaker --dry-run
    Exit status: 0 when programmed (or printed), 2 otherwise.
    """
    from hwgen.boards.flash import check_ready, program, programming_command

    try:
        plan = programming_command(build_dir, board)
        for note in plan.notes:
            console.print(f"[yellow]note:[/] {escape(note)}")
        devices = " or ".join(str(device) for device in plan.board.usb)
        if dry_run:
            console.print(f"dry run: this command programs the {plan.board.title} over USB "
                          f"device {devices}; nothing was run")
            click.echo(plan.command)
            return
        check_ready(plan)
        console.print(f"programming the {plan.board.title} (USB device {devices}): "
                      f"{plan.command}")
        program(plan)
    except HwgenError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(exc.exit_code)
    console.print(f"[green]✓[/] programmed the {plan.board.title} with {plan.bitstream.name}")


@main.command()
@click.argument("build_dir", metavar="BUILD", type=click.Path(path_type=Path, exists=True,
                                                              file_okay=False))
@click.option("--port", "-p", required=True,
              help="The board's serial port (/dev/ttyUSB1 on an iCEBreaker: its FTDI's "
                   "second interface), or any pyserial URL.")
@click.option("--input", "inputs", required=True, type=click.Path(path_type=Path,
                                                                   exists=True),
              help="A .npy of model inputs [N, ...], float or integer as the model takes "
                   "them (the same kind of file as build --inputs).")
@click.option("--labels", type=click.Path(path_type=Path, exists=True),
              help="A .npy of N class labels: adds accuracy.")
@click.option("--out", "-o", "out_file", type=click.Path(path_type=Path),
              help="Write the accelerator's outputs [N, n_out] there (.npy).")
@click.option("--window", type=click.IntRange(1, 4), default=2, show_default=True,
              help="Requests in flight at once.")
@click.option("--timeout", "timeout_s", type=float, default=1.0, show_default=True,
              help="Seconds to wait for a reply before resending.")
def run(build_dir, port, inputs, labels, out_file, window, timeout_s):
    """Send inputs to a flashed board over its serial port and print the results.

    \b
    BUILD is the folder `hwgen build` wrote (its host_link.json describes the link). Each
    input is quantized as the model does, sent as one request of the host link protocol
    (docs/host-link.md), and the reply checked; a corrupt, failed or late reply is resent.
    Prints the predicted classes (first 20), accuracy with --labels, and the frames per
    second measured over the link beside the accelerator's own.
      hwgen run build/digits_mlp_w4a4-icebreaker --port /dev/ttyUSB1 \\
          --input examples/digits_test_x.npy --labels examples/digits_test_y.npy
    """
    import numpy as np

    from hwgen.boards.host import run as run_host
    from hwgen.boards.protocol import LinkDescription

    try:
        desc = LinkDescription.read(build_dir)
        x = np.load(inputs, allow_pickle=False)
        y = np.load(labels, allow_pickle=False).reshape(-1) if labels else None
        if y is not None and len(y) != len(x):
            raise click.BadParameter(f"--labels has {len(y)} entries, --input {len(x)}")
        status = console.status(f"sending {len(x)} frames to {port}", spinner="dots")
        with status:
            result = run_host(build_dir, port, x, window=window, timeout_s=timeout_s,
                              progress=lambda n: status.update(f"{n}/{len(x)} frames"))
    except (HwgenError, OSError, ValueError) as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(getattr(exc, "exit_code", 2))
    if out_file is not None:
        np.save(out_file, result.outputs)
    shown = " ".join(str(int(c)) for c in result.predicted[:20])
    click.echo(f"classes: {shown}{' ...' if len(x) > 20 else ''}")
    if y is not None:
        click.echo(f"accuracy: {np.mean(result.predicted == y):.2%} over {len(y)} inputs")
    click.echo(f"{len(x)} frames in {result.seconds:.2f}s: {result.fps:,.0f} frames/s over "
               f"the link at {desc.baud} baud (the accelerator alone: "
               f"{desc.accelerator_fps:,.0f} frames/s at {desc.clock_mhz:g} MHz)")
    if result.resent:
        click.echo("resent: " + ", ".join(f"{k} {v}" for k, v in result.resent.items()))


if __name__ == "__main__":
    main()
