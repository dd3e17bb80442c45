"""Section G of BENCHMARK.md: one DECA client on a GPU against mixed-precision full Adam."""
