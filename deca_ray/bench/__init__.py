"""Benchmarks that write result files (``deca-ray bench``); numbers reach BENCHMARKS.md only from them."""
