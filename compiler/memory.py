"""The memory plan: every memory each layer instantiates, and where it lives.

The plan is authoritative: the hardware marks each memory with the Yosys attribute
``ram_style`` taken from here (``"block"`` or ``"logic"``), so the synthesized block-RAM count
must equal :func:`block_rams` exactly, and the build checks that it does.

iCE40 block RAMs (EBR) are 4 Kbit each and can be configured 256x16, 512x8, 1024x4 or
2048x2; a memory takes ``ceil(width / w) * ceil(depth / d)`` blocks in the best of these
configurations. A ROM goes to block RAM when it fills at least a quarter of the blocks it would
take (a ROM in logic costs about one LUT per 8 bits); a RAM (input buffers, FIFOs) when it
holds at least :data:`RAM_BITS_PER_EBR` bits per block (in logic it costs a flip-flop per
bit); anything over :data:`LOGIC_LIMIT_BITS` goes to block RAM. A layer's ``styles`` (set by
the folding pass when block RAM runs short) overrides the rule per purpose.

A third style, ``"spram"``, puts a RAM into the UP5K's single-port 16Kx16 SPRAM blocks
(:class:`hwgen.hw.spram.SPRAM`, ``ceil(width / 16)`` blocks side by side). SPRAM has no initial
contents, so only RAMs that are written before they are read (input buffers) may go there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .dataflow import FIFO, MVAU

__all__ = [
    "EBR_CONFIGS",
    "MemorySpec",
    "bandwidth_bound",
    "block_rams",
    "ebr_count",
    "plan",
    "spram_blocks",
]

#: (width, depth) configurations of one 4 Kbit iCE40 block RAM.
EBR_CONFIGS = ((16, 256), (8, 512), (4, 1024), (2, 2048))
EBR_BITS = 4096
#: Shape of one iCE40 UP5K SPRAM block.
SPRAM_WIDTH, SPRAM_DEPTH = 16, 16384
STYLES = ("block", "logic", "spram")
#: Memories larger than this always go to block RAM.
LOGIC_LIMIT_BITS = 4096
#: A RAM goes to block RAM when it holds at least this many bits per block it would take.
RAM_BITS_PER_EBR = 192


@dataclass(frozen=True)
class MemorySpec:
    """One memory: ``purpose`` (``weights``, ``thresholds[lane]``, ``input_buffer``, ``fifo``),
    ``width`` bits per word, ``depth`` words, ``style`` (``block``, ``logic`` or ``spram``),
    ``rom`` (contents fixed at configuration)."""

    layer: str
    purpose: str
    width: int
    depth: int
    rom: bool
    style: str

    @property
    def bits(self) -> int:
        return self.width * self.depth

    @property
    def ebr(self) -> int:
        """Block RAMs this memory occupies (0 in logic)."""
        return ebr_count(self.width, self.depth) if self.style == "block" else 0

    @property
    def spram(self) -> int:
        """SPRAM blocks this memory occupies."""
        return math.ceil(self.width / SPRAM_WIDTH) if self.style == "spram" else 0

    @property
    def attrs(self) -> dict[str, str]:
        """Attributes for ``amaranth.lib.memory.Memory(attrs=...)``."""
        return {"ram_style": self.style}


def ebr_count(width: int, depth: int) -> int:
    """Blocks a ``width`` x ``depth`` memory takes in the best EBR configuration."""
    return min(math.ceil(width / w) * math.ceil(depth / d) for w, d in EBR_CONFIGS)


def _style(width: int, depth: int, rom: bool) -> str:
    bits, ebr = width * depth, ebr_count(width, depth)
    if bits > LOGIC_LIMIT_BITS:
        return "block"
    if rom:
        # A ROM in logic costs about a LUT per 8 bits.
        return "block" if 4 * bits >= ebr * EBR_BITS else "logic"
    # A RAM in logic costs a flip-flop per bit and its read multiplexers.
    return "block" if bits >= RAM_BITS_PER_EBR * ebr else "logic"


def _spec(layer, purpose, width, depth, rom) -> MemorySpec:
    style = layer.styles.get(purpose.split("[")[0]) or _style(width, depth, rom)
    if style not in STYLES:
        raise ValueError(f"{layer.name}: memory style {style!r} for {purpose} must be "
                         f"'block', 'logic' or 'spram'")
    if style == "spram" and rom:
        raise ValueError(f"{layer.name}: {purpose} has fixed contents, but SPRAM cannot be "
                         f"initialised; put it in 'block' or 'logic'")
    if style == "spram" and depth > SPRAM_DEPTH:
        raise ValueError(f"{layer.name}: {purpose} has {depth} words, more than one SPRAM "
                         f"block's {SPRAM_DEPTH}; put it in 'block' or 'logic'")
    return MemorySpec(layer.name, purpose, width, depth, rom, style)


def plan(layer) -> list[MemorySpec]:
    """The memories ``layer`` instantiates with its current folding."""
    if isinstance(layer, MVAU):
        mems = [_spec(layer, "weights", layer.pe * layer.simd * layer.weight_bits,
                      layer.nf * layer.sf, True)]
        if layer.nf > 1:
            mems.append(_spec(layer, "input_buffer", layer.simd * layer.in_bits,
                              layer.sf, False))
        if layer.thresholds is not None:
            # One memory per PE lane: the lanes' binary searches visit different nodes.
            mems += [_spec(layer, f"thresholds[{j}]", layer.threshold_bits,
                           layer.nf * 2**layer.out_bits, True) for j in range(layer.pe)]
        return mems
    if isinstance(layer, FIFO) and layer.depth > 2:
        # One entry lives in the output register; a FIFO of two or fewer is registers only.
        return [_spec(layer, "fifo", layer.lanes * layer.bits, layer.depth - 1, False)]
    return []


def block_rams(layers) -> int:
    """Total block RAMs the plan uses."""
    return sum(spec.ebr for layer in layers for spec in plan(layer))


def spram_blocks(layers) -> int:
    """Total SPRAM blocks the plan uses."""
    return sum(spec.spram for layer in layers for spec in plan(layer))


def bandwidth_bound(layers, totals: dict) -> dict:
    """The memory-bandwidth bound on cycles per frame of a design that reads its weights from
    memory: every weight bit of the model must be read once per frame, and the weight stores
    deliver at most ``bits_per_cycle`` bits per cycle, so

        bound_cycles_per_frame = ceil(weight_bits / bits_per_cycle)

    ``weight_bits`` is ``sum(mh * mw * weight_bits)`` over the MVAUs (padding excluded);
    ``bits_per_cycle`` counts every weight store: all of the board's block RAMs at 16 bits per
    cycle each (iCE40 EBR's widest port; the design may not use them all, the bound assumes it
    could), plus the word width of every weight memory in logic (it delivers a word per cycle).
    Weights in SPRAM would add 16 bits per block; hwgen puts none there (SPRAM cannot be
    preloaded)."""
    from .dataflow import MVAU

    mvaus = [layer for layer in layers if isinstance(layer, MVAU)]
    weight_bits = sum(layer.mh * layer.mw * layer.weight_bits for layer in mvaus)
    bram_bits = int(totals.get("bram", 0)) * EBR_CONFIGS[0][0]
    logic_bits = sum(spec.width for layer in mvaus for spec in plan(layer)
                     if spec.purpose == "weights" and spec.style == "logic")
    per_cycle = bram_bits + logic_bits
    return {"weight_bits": weight_bits, "bits_per_cycle": per_cycle,
            "bram_bits_per_cycle": bram_bits, "logic_bits_per_cycle": logic_bits,
            "cycles": math.ceil(weight_bits / per_cycle) if per_cycle else None}
