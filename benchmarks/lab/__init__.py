"""The algorithm lab: a synthetic non-IID task through deca_ray's own clients and methods, minutes on 2 cores.

    task.py      the task: class-dependent token statistics, Dirichlet split over 8 clients, held-out set
    presets.py   the grid: every method, DECA's h definition × scale × β, BMA variants; learning rates
    run.py       one run per (setting, seed) via the reference loop; the result file
    report.py    mean ± standard error over seeds, paired differences, BENCHMARKS.md's lab section
"""
