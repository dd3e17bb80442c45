"""The quality suite (BENCHMARK.md section Q, v2): the paper's Table 1 scaled down, with lr grids, seeds and paired intervals.

    presets.py      what runs: methods with their lr families, DECA ablations, grids, seeds, splits
    plan.py         which (run, seed, lr) each phase measures; the lr the grid chose
    run.py          the phases into a suite directory, resumable (suite_dir.py: its files, atomic)
    measure.py      one job: a tracked training run, then its final models scored by the suite
    held_out.py     one seed's held-out examples cut into validation / test, x0's states (cached)
    scoring.py      label scores from x0's hidden states at the lowest trained layer (final_models.py: per model)
    comparisons.py  means over seeds, paired bootstrap intervals against DECA, the goal
    report.py       BENCHMARKS.md's section Q (plots.py: its plots; report_v1.py: suites before v2)
"""
