"""Step profile (BENCHMARK.md section S, "Step"): where a client's training step goes, and its FLOP/s ÷ matmul peak."""
