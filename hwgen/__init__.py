"""hwgen: quantized neural networks to verified dataflow accelerators on open FPGAs."""
