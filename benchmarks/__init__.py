"""deca_ray's benchmarks, a repository tool beside its results (``python -m benchmarks``); not part of the wheel.

Numbers reach BENCHMARKS.md only from the result files these commands write under
``benchmarks/results/``. The code uses deca_ray's public API only: config loading,
``run_experiment``, the experiment builders, the reference loop, ``ClientWorker``'s verbs
and ``RayClientGroup``'s public methods; what passes through the driver is counted by a
``ClientGroup`` wrapper (``benchmarks.system.counting``).

    __main__.py   the command line: system, quality, gpu, gpu-report
    results.py    result files and their provenance (commit, date, machine, versions)
    markdown.py   BENCHMARKS.md: its header and the marked sections the reports replace
    driving.py    the one place a benchmark builds deca_ray's Driver
    system/       section S: overhead, exchange, traffic, memory, scale
    quality/      section Q: every method and DECA's ablations on non-IID BBC
    gpu/          section G: one GPU, bf16 weights with fp32 active-block state
    lab/          the algorithm lab: every method and DECA variant on a synthetic non-IID task, ≥ 5 seeds
"""
