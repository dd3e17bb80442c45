"""Section S of BENCHMARK.md: system efficiency ratios, measured side by side in one run."""
