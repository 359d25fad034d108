// hwgen simulation harness (template; hwgen.sim.verilator fills the {{...}} fields).
//
// Streams input beats from a file into the accelerator back to back, drives the output ready
// from a seeded xorshift pattern when `bp` is high, and logs every transfer to a text file:
//   i <cycle>                      first input beat of a frame transferred
//   o <payload hex> <cycle>        output beat transferred (payload includes `last` at the top)
//   t <cycle> <in beats> <out beats>   no output progress for `hwgen_timeout` cycles
//   s <cycles> <stall cycles> <frame_error>   end of phase
// The cocotb side only drives clk and rst, sets `phase`/`bp`, raises `start` and waits for `done`.
//
// Plusargs: +hwgen_in=<file> (one hex beat per line, `last` included), +hwgen_out=<prefix>
// (the log goes to <prefix>.<phase>), +hwgen_beats_in=<total input beats>,
// +hwgen_beats_out=<total output beats>, +hwgen_frame_in=<input beats per frame>,
// +hwgen_seed=<32-bit seed>, +hwgen_stall=<ready-low threshold out of 65536>,
// +hwgen_timeout=<cycles>.
module hwgen_harness (
    input  wire       clk,
    input  wire       rst,
    input  wire       start,
    input  wire [7:0] phase,
    input  wire       bp,
    output reg        done,
    output reg        failed
);
    localparam integer IW = {{IN_WIDTH}};
    localparam integer OW = {{OUT_WIDTH}};

    reg          i_valid;
    wire         i_ready;
    reg  [IW:0]  i_payload;
    wire         o_valid;
    reg          o_ready;
    wire [OW:0]  o_payload;
    wire         frame_error;

    {{TOP}} dut (
        .clk(clk),
        .rst(rst),
        .i__valid(i_valid),
        .i__ready(i_ready),
        .i__payload(i_payload),
        .o__valid(o_valid),
        .o__ready(o_ready),
        .o__payload(o_payload),
        .frame_error(frame_error)
    );

    string in_name;
    string out_prefix;
    longint unsigned total_in;
    longint unsigned total_out;
    longint unsigned frame_in;
    longint unsigned timeout;
    longint unsigned seed;
    longint unsigned stall_thresh;

    initial begin
        if (!$value$plusargs("hwgen_in=%s", in_name)) $fatal(1, "hwgen: +hwgen_in missing");
        if (!$value$plusargs("hwgen_out=%s", out_prefix)) $fatal(1, "hwgen: +hwgen_out missing");
        if (!$value$plusargs("hwgen_beats_in=%d", total_in)) total_in = 0;
        if (!$value$plusargs("hwgen_beats_out=%d", total_out)) total_out = 0;
        if (!$value$plusargs("hwgen_frame_in=%d", frame_in)) frame_in = 1;
        if (!$value$plusargs("hwgen_timeout=%d", timeout)) timeout = 100000;
        if (!$value$plusargs("hwgen_seed=%d", seed)) seed = 1;
        if (!$value$plusargs("hwgen_stall=%d", stall_thresh)) stall_thresh = 0;
    end

    // Harness bookkeeping: blocking variables, read only inside this block.
    integer          in_fd;
    integer          out_fd;
    integer          rc;
    reg              started;
    reg              running;
    reg              finish;
    reg  [IW:0]      next_beat;
    reg  [31:0]      lfsr;
    longint unsigned cycle;
    longint unsigned in_beats;
    longint unsigned out_beats;
    longint unsigned idle;
    longint unsigned stalls;

    always @(posedge clk) begin
        if (rst) begin
            started = 1'b0;
            running = 1'b0;
            done    <= 1'b0;
            failed  <= 1'b0;
            i_valid <= 1'b0;
            o_ready <= 1'b0;
        end else if (start && !started) begin
            started   = 1'b1;
            running   = 1'b1;
            cycle     = 0;
            in_beats  = 0;
            out_beats = 0;
            idle      = 0;
            stalls    = 0;
            in_fd  = $fopen(in_name, "r");
            out_fd = $fopen($sformatf("%s.%0d", out_prefix, phase), "w");
            if (in_fd == 0) $fatal(1, "hwgen: cannot open %s", in_name);
            if (out_fd == 0) $fatal(1, "hwgen: cannot open %s.%0d", out_prefix, phase);
            lfsr = seed[31:0] ^ (32'h9E3779B9 * {24'd0, phase + 8'd1});
            if (lfsr == 0) lfsr = 32'h1;
            o_ready <= !bp;
            if (total_in > 0) begin
                rc = $fscanf(in_fd, "%h", next_beat);
                i_payload <= next_beat;
                i_valid   <= 1'b1;
            end
        end else if (running) begin
            finish = 1'b0;
            if (!o_ready) stalls = stalls + 1;
            if (i_valid && i_ready) begin
                if (in_beats % frame_in == 0) $fwrite(out_fd, "i %0d\n", cycle);
                in_beats = in_beats + 1;
                if (in_beats < total_in) begin
                    rc = $fscanf(in_fd, "%h", next_beat);
                    i_payload <= next_beat;
                end else begin
                    i_valid <= 1'b0;
                end
            end
            if (o_valid && o_ready) begin
                $fwrite(out_fd, "o %h %0d\n", o_payload, cycle);
                out_beats = out_beats + 1;
                idle = 0;
                if (out_beats >= total_out) finish = 1'b1;
            end else begin
                idle = idle + 1;
                if (idle >= timeout) begin
                    $fwrite(out_fd, "t %0d %0d %0d\n", cycle, in_beats, out_beats);
                    failed <= 1'b1;
                    finish = 1'b1;
                end
            end
            cycle = cycle + 1;
            lfsr = lfsr ^ (lfsr << 13);
            lfsr = lfsr ^ (lfsr >> 17);
            lfsr = lfsr ^ (lfsr << 5);
            o_ready <= !bp || ({32'd0, lfsr[31:16]} >= stall_thresh[47:0]);
            if (finish) begin
                $fwrite(out_fd, "s %0d %0d %0d\n", cycle, stalls, frame_error);
                $fclose(out_fd);
                $fclose(in_fd);
                running = 1'b0;
                i_valid <= 1'b0;
                o_ready <= 1'b0;
                done    <= 1'b1;
            end
        end
    end
endmodule
