"""The memory plan: every memory each layer instantiates, and where it lives.

The plan is authoritative: the hardware marks each memory with the Yosys attribute
``ram_style`` taken from here (``"block"`` or ``"logic"``), so the synthesized block-RAM count
must equal :func:`block_rams` exactly, and the build checks that it does.

Block RAM geometry comes from the board as plain data: a :class:`BlockRAM` per family
(:data:`BLOCK_RAMS`), which :class:`hwgen.compiler.fold.Budget` carries and
:func:`hwgen.compiler.fold.fold` records on every layer it folds (``layer.block_ram``); a layer
without one is planned for iCE40. iCE40 block RAMs (EBR) are 4 Kbit, 256x16 to 2048x2; ECP5's
DP16KD are 18 Kbit, 1024x18 to 16384x1, or 512x36 with one read and one write port.
:meth:`BlockRAM.blocks` counts blocks the way Yosys's ``memory_libmap`` maps a memory: for each
configuration ``w`` x ``d`` it needs ``ceil(depth / d)`` slices of the memory's (padded) width,
packed side by side into ``w``-bit words, and it takes the configuration of least cost (a block
costs ``cost``, each extra slice a read multiplexer of half a unit per data bit). A RAM's width
is padded to whole write-enable bytes: on ECP5 a 16-bit RAM takes 18-bit words.

Yosys also strips bit columns that are constant in every word of a ROM (``opt_mem``) before
mapping it, which the plan cannot see (it depends on the contents): shallow ROMs, where that is
likely, go to logic (:attr:`BlockRAM.min_rom_depth`), and the build checks the synthesized
count against the plan less the blocks such stripping saved (``hwgen.api``, from the Yosys
log).

A ROM goes to block RAM when it fills at least a quarter of the blocks it would take, a RAM
(input buffers, FIFOs) when it holds at least :attr:`BlockRAM.ram_bits_per_block` bits per
block (in logic it costs a flip-flop per bit), and anything over
:attr:`BlockRAM.logic_limit_bits` goes to block RAM. A layer's ``styles`` (set by the folding
pass when block RAM runs short) overrides the rule per purpose.

``"distributed"`` puts a RAM into the family's LUT RAM (ECP5's 16x4 TRELLIS_DPR16X4); gather
lanes' frame copies go there by default.

A further style, ``"spram"``, puts a RAM into the UP5K's single-port 16Kx16 SPRAM blocks
(:class:`hwgen.hw.spram.SPRAM`, ``ceil(width / 16)`` blocks side by side). SPRAM has no initial
contents, so only RAMs that are written before they are read (input buffers) may go there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .dataflow import FIFO, MVAU, SlidingWindow

__all__ = [
    "BLOCK_RAMS",
    "EBR_CONFIGS",
    "ECP5_DP16KD",
    "ICE40_EBR",
    "BlockRAM",
    "MemorySpec",
    "bandwidth_bound",
    "block_ram_of",
    "block_rams",
    "ebr_count",
    "gather_column_bits",
    "gather_element_bits",
    "line_buffer_depth",
    "plan",
    "spram_blocks",
]


@dataclass(frozen=True)
class BlockRAM:
    """A family's block RAM as Yosys maps memories onto it, and when the plan uses it.

    Attributes
    ----------
    cell : str
        The primitive in the synthesized netlist (``"SB_RAM40_4K"``, ``"DP16KD"``).
    abits : int
        Address bits at the narrowest width.
    widths : tuple[int, ...]
        Data widths, narrowest first; ``widths[i]`` is ``2 ** (abits - i)`` words deep.
    byte : int
        Write-enable granularity: a RAM's word is padded to a multiple of
        ``min(byte, width)`` bits (ROMs are not padded).
    cost : int
        ``memory_libmap``'s cost of one block, weighed against read multiplexers.
    port_bits : int
        Widest read port: the most bits one block delivers per cycle.
    logic_limit_bits : int
        Memories larger than this always go to block RAM.
    ram_bits_per_block : int
        A RAM goes to block RAM when it holds at least this many bits per block it takes.
    min_rom_depth : int
        ROMs with fewer words go to logic: each bit column is a function of a few address
        bits, and Yosys strips constant columns from them (which the plan cannot count).
    rom_bits_per_cell : float
        A ROM in logic costs ``bits / rom_bits_per_cell`` logic cells, or, with
        ``rom_column_words``, a cell per ``rom_column_words`` words of every bit column.
    rom_column_words : int or None
        Words one logic cell holds of a ROM's bit column, where wide-LUT multiplexers are free
        (ECP5's PFUMX/L6MUX21 combine LUT4s into up to 128-word columns).
    ram_cells_per_bit : float
        Logic cells per bit of a RAM in logic (its flip-flop and read multiplexer).
    lutram : tuple[int, int] or None
        ``(depth, width)`` of the family's distributed RAM primitive (LUTs used as RAM), if
        it has one: ECP5's TRELLIS_DPR16X4.
    lutram_cells : int
        Logic cells one distributed RAM primitive takes from placement.
    """

    cell: str
    abits: int
    widths: tuple
    byte: int
    cost: int
    port_bits: int
    logic_limit_bits: int
    ram_bits_per_block: int
    min_rom_depth: int
    rom_bits_per_cell: float
    rom_column_words: int | None
    ram_cells_per_bit: float
    lutram: tuple | None = None
    lutram_cells: int = 0

    @property
    def bits(self) -> int:
        """Capacity of one block, counting the parity bits of 9-bit bytes."""
        return self.widths[-1] << (self.abits - len(self.widths) + 1)

    @property
    def configs(self) -> tuple:
        """``(width, depth)`` configurations, widest first."""
        return tuple((w, 2 ** (self.abits - i)) for i, w in enumerate(self.widths))[::-1]

    def blocks(self, width: int, depth: int, rom: bool = True) -> int:
        """Blocks a ``width`` x ``depth`` memory takes, as ``memory_libmap`` maps it."""
        best = None
        for i, unit in enumerate(self.widths):
            slices = math.ceil(depth / 2 ** (self.abits - i))
            byte = 1 if rom else min(self.byte, unit)
            count = math.ceil(slices * math.ceil(width / byte) * byte / unit)
            # Read multiplexers over the slices; RAMs also decode their write enables.
            cost = (self.cost * count + 0.5 * (slices - 1) * width
                    + (0.5 * slices if slices > 1 and not rom else 0))
            if best is None or cost < best[0]:  # the narrowest wins ties, as in Yosys
                best = (cost, count)
        return best[1]

    def distributed_cells(self, width: int, depth: int) -> float:
        """Estimated logic cells of a ``width`` x ``depth`` RAM in distributed RAM."""
        words, bits = self.lutram
        return math.ceil(depth / words) * math.ceil(width / bits) * self.lutram_cells

    def logic_cells(self, width: int, depth: int, rom: bool) -> float:
        """Estimated logic cells of a ``width`` x ``depth`` memory in logic."""
        if not rom:
            return self.ram_cells_per_bit * width * depth
        if self.rom_column_words:
            return width * math.ceil(depth / self.rom_column_words) if depth > 1 else 0.0
        return width * depth / self.rom_bits_per_cell


#: iCE40 EBR (``SB_RAM40_4K``, Yosys ``ice40/brams.txt``): a ROM in logic costs about a logic
#: cell per 5 bits (LUT4s and the LUT4 multiplexers between them), a RAM 1.8 cells per bit.
ICE40_EBR = BlockRAM(cell="SB_RAM40_4K", abits=11, widths=(2, 4, 8, 16), byte=1, cost=64,
                     port_bits=16, logic_limit_bits=4096, ram_bits_per_block=192,
                     min_rom_depth=1, rom_bits_per_cell=5, rom_column_words=None,
                     ram_cells_per_bit=1.8)
#: ECP5 DP16KD (Yosys ``lattice/brams_16kd.txt``: true dual port up to 18 bits wide, and one
#: read plus one 36-bit write port as PDPW16KD, both DP16KD cells in the netlist; 9-bit
#: write-enable bytes). Logic is plentiful next to 18 Kbit blocks (83,640 LUT4s and 208 blocks
#: on the 85F: about 400 LUT4s per block), so memories up to one block's size may stay in logic,
#: and a RAM is worth a block from about 400 bits in it (in logic a bit costs a flip-flop and
#: about a LUT4 of write decode and read multiplexer, measured with synth_ecp5).
ECP5_DP16KD = BlockRAM(cell="DP16KD", abits=14, widths=(1, 2, 4, 9, 18, 36), byte=9,
                       cost=128, port_bits=36, logic_limit_bits=18432, ram_bits_per_block=384,
                       min_rom_depth=32, rom_bits_per_cell=16, rom_column_words=16,
                       ram_cells_per_bit=1.0, lutram=(16, 4), lutram_cells=6)
#: Block RAM by device family (``Board.family``).
BLOCK_RAMS = {"ice40": ICE40_EBR, "ecp5": ECP5_DP16KD}

#: (width, depth) configurations of one 4 Kbit iCE40 block RAM.
EBR_CONFIGS = ICE40_EBR.configs
#: Shape of one iCE40 UP5K SPRAM block.
SPRAM_WIDTH, SPRAM_DEPTH = 16, 16384
STYLES = ("block", "logic", "spram", "distributed")


def block_ram_of(layer) -> BlockRAM:
    """The block RAM ``layer`` is planned for: what folding recorded, else iCE40's."""
    return getattr(layer, "block_ram", None) or ICE40_EBR


@dataclass(frozen=True)
class MemorySpec:
    """One memory: ``purpose`` (``weights``, ``thresholds[lane]``, ``input_buffer``, ``fifo``,
    ``line_buffer``...), ``width`` bits per word, ``depth`` words, ``style`` (``block``,
    ``logic`` or ``spram``), ``rom`` (contents fixed at configuration), and the ``block_ram``
    it is planned for."""

    layer: str
    purpose: str
    width: int
    depth: int
    rom: bool
    style: str
    block_ram: BlockRAM = ICE40_EBR

    @property
    def bits(self) -> int:
        return self.width * self.depth

    @property
    def ebr(self) -> int:
        """Block RAMs this memory occupies (0 in logic or SPRAM)."""
        if self.style != "block":
            return 0
        return self.block_ram.blocks(self.width, self.depth, self.rom)

    @property
    def spram(self) -> int:
        """SPRAM blocks this memory occupies."""
        return math.ceil(self.width / SPRAM_WIDTH) if self.style == "spram" else 0

    @property
    def logic_cells(self) -> float:
        """Estimated logic cells (0 unless in logic or distributed RAM)."""
        if self.style == "distributed":
            return self.block_ram.distributed_cells(self.width, self.depth)
        if self.style != "logic":
            return 0.0
        return self.block_ram.logic_cells(self.width, self.depth, self.rom)

    @property
    def attrs(self) -> dict[str, str]:
        """Attributes for ``amaranth.lib.memory.Memory(attrs=...)``."""
        return {"ram_style": self.style}


def ebr_count(width: int, depth: int, rom: bool = True, block_ram: BlockRAM = ICE40_EBR) -> int:
    """Blocks a ``width`` x ``depth`` memory takes (:meth:`BlockRAM.blocks`)."""
    return block_ram.blocks(width, depth, rom)


def _style(width: int, depth: int, rom: bool, block_ram: BlockRAM = ICE40_EBR) -> str:
    bits, blocks = width * depth, block_ram.blocks(width, depth, rom)
    if rom and depth < block_ram.min_rom_depth:
        return "logic"
    if bits > block_ram.logic_limit_bits:
        return "block"
    if rom:
        # A ROM in logic is cheap: worth a block only when it fills a quarter of it.
        return "block" if 4 * bits >= blocks * block_ram.bits else "logic"
    # A RAM in logic costs a flip-flop per bit and its read multiplexers.
    return "block" if bits >= block_ram.ram_bits_per_block * blocks else "logic"


def _spec(layer, purpose, width, depth, rom, default=None) -> MemorySpec:
    block_ram = block_ram_of(layer)
    style = layer.styles.get(purpose.split("[")[0]) or default or \
        _style(width, depth, rom, block_ram)
    if style not in STYLES:
        raise ValueError(f"{layer.name}: memory style {style!r} for {purpose} must be "
                         f"'block', 'logic', 'spram' or 'distributed'")
    if style == "distributed" and (rom or block_ram.lutram is None):
        raise ValueError(f"{layer.name}: {purpose} cannot go to distributed RAM: "
                         f"{'it is a ROM' if rom else 'this family has none'}; put it in "
                         f"'block' or 'logic'")
    if style == "spram" and rom:
        raise ValueError(f"{layer.name}: {purpose} has fixed contents, but SPRAM cannot be "
                         f"initialised; put it in 'block' or 'logic'")
    if style == "spram" and depth > SPRAM_DEPTH:
        raise ValueError(f"{layer.name}: {purpose} has {depth} words, more than one SPRAM "
                         f"block's {SPRAM_DEPTH}; put it in 'block' or 'logic'")
    return MemorySpec(layer.name, purpose, width, depth, rom, style, block_ram)


def plan(layer) -> list[MemorySpec]:
    """The memories ``layer`` instantiates with its current folding."""
    if isinstance(layer, MVAU) and layer.gather:
        # Weights and their input columns, slot by slot; a frame copy per lane (two banks).
        lanes, words = layer.pe * layer.simd, sum(layer.fold_slots)
        mems = [_spec(layer, "weights", lanes * layer.weight_bits, words, True),
                _spec(layer, "columns", lanes * gather_column_bits(layer), words, True)]
        # Small RAMs, one per lane: distributed RAM where the family has it.
        default = "distributed" if block_ram_of(layer).lutram else None
        mems += [_spec(layer, f"frame[{i}]", layer.simd * layer.in_bits, gather_frame_depth(layer),
                       False, default) for i in range(lanes)]
        if mems[-1].style == "spram":  # one port: it could not fill a bank while reading one
            raise ValueError(f"{layer.name}: gather lanes' frame copies cannot go to SPRAM; "
                             f"put them in 'distributed', 'block' or 'logic'")
        if layer.thresholds is not None:
            mems += [_spec(layer, f"thresholds[{j}]", layer.threshold_bits,
                           layer.nf * 2**layer.out_bits, True) for j in range(layer.pe)]
        return mems
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
    if isinstance(layer, SlidingWindow):
        # The line buffer: buffer_rows rows of the map, a beat of lanes channels per word.
        return [_spec(layer, "line_buffer", layer.lanes * layer.bits, line_buffer_depth(layer),
                      False)]
    if isinstance(layer, FIFO) and layer.depth > 2:
        # One entry lives in the output register; a FIFO of two or fewer is registers only.
        return [_spec(layer, "fifo", layer.lanes * layer.bits, layer.depth - 1, False)]
    return []


def line_buffer_depth(layer: SlidingWindow) -> int:
    """Words of a sliding-window generator's line buffer: ``buffer_rows`` rows of ``w *
    c / lanes`` beats."""
    return layer.buffer_rows * layer.w * (layer.c // layer.lanes)


def gather_frame_depth(layer) -> int:
    """Words of a gather lane's frame copy: two banks of ``sf`` words, each padded to a power
    of two, so that the bank is the address's top bit (no adder per lane)."""
    return 2 << (layer.sf - 1).bit_length()


def gather_element_bits(layer) -> int:
    """Bits of the element index (in a frame word of ``simd`` elements) in a gather layer's
    column; the column's low bits."""
    return max(1, (layer.simd - 1).bit_length())


def gather_column_bits(layer) -> int:
    """Bits of one lane's input column in a gather layer's ``columns`` memory: the word of
    the frame (``sf`` words of ``simd`` elements) above the element in it."""
    return max(1, (layer.sf - 1).bit_length()) + gather_element_bits(layer)


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
    ``bits_per_cycle`` counts every weight store: all of the board's block RAMs at their widest
    read port each (:attr:`BlockRAM.port_bits`: 16 bits on iCE40, 36 on ECP5; the design may not
    use them all, the bound assumes it could), plus the word width of every weight memory in
    logic (it delivers a word per cycle). Weights in SPRAM would add 16 bits per block; hwgen
    puts none there (SPRAM cannot be preloaded)."""
    mvaus = [layer for layer in layers if isinstance(layer, MVAU)]
    weight_bits = sum(layer.mh * layer.mw * layer.weight_bits for layer in mvaus)
    port_bits = block_ram_of(mvaus[0]).port_bits if mvaus else ICE40_EBR.port_bits
    bram_bits = int(totals.get("bram", 0)) * port_bits
    logic_bits = sum(spec.width for layer in mvaus for spec in plan(layer)
                     if spec.purpose == "weights" and spec.style == "logic")
    per_cycle = bram_bits + logic_bits
    return {"weight_bits": weight_bits, "bits_per_cycle": per_cycle,
            "bram_bits_per_cycle": bram_bits, "logic_bits_per_cycle": logic_bits,
            "cycles": math.ceil(weight_bits / per_cycle) if per_cycle else None}
