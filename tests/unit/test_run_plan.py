"""Opening runs: several runs creating one new sqlite MLflow store at once all start (a file lock)."""

from __future__ import annotations

import subprocess
import sys
import time

OPEN_A_RUN = """
import sys, time
from pathlib import Path
from deca_ray.config import config_from_dict
from deca_ray.run_plan import plan_run
from deca_ray.tracking import Tracker

output, go = Path(sys.argv[1]), Path(sys.argv[2])
config = config_from_dict({"name": "race", "tracking": {"output_dir": str(output), "system_metrics": False}})
plan = plan_run(config)
tracker = Tracker(config.tracking, plan.run_dir)
while not go.exists():  # every process is imported and ready: open together
    time.sleep(0.01)
plan.open(tracker, {})
tracker.end("FINISHED")
"""


def test_runs_opening_one_new_sqlite_store_at_the_same_time_all_start(tmp_path):
    # Prepare
    output, go = tmp_path / "runs", tmp_path / "go"
    processes = [subprocess.Popen([sys.executable, "-c", OPEN_A_RUN, str(output), str(go)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    time.sleep(12)  # imports (mlflow, torch) under load
    # Execute
    go.touch()
    results = [process.communicate(timeout=300) for process in processes]
    # Assert
    assert [process.returncode for process in processes] == [0, 0, 0], [err[-2000:] for _, err in results]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{output / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("deca-ray")
    assert len(client.search_runs([experiment.experiment_id])) == 3
    assert len(list(output.glob("race-*"))) == 3
