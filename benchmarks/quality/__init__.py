"""Section Q of BENCHMARK.md: every method and DECA's ablations, one tracked run each."""
