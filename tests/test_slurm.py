"""The repository's own Slurm scripts on a real single-node Slurm (Debian's packages): an array
job trains a tiny grid as 2 shards under a 1-minute time limit, so that Slurm's warning signal
stops the tasks part-way; each stopped task saves, requeues itself and its next start resumes;
the evaluation job runs after the array (afterok); the grid ends equal to the same shards
trained without a stop, bit for bit. Installs and starts daemons, so it runs where CI runs it
(CI=true) or with AL2_SLURM=1; it stops the daemons it started."""
import os
import re
import subprocess
import sys
import time

import pytest
import torch

from al2.paths import REPO_ROOT
from conftest import main, read

RUN = os.environ.get("CI") == "true" or os.environ.get("AL2_SLURM") == "1"
# ~40 s of training per task when the two tasks share 2 cores: longer than the window in which
# Slurm sends a 60 s warning under a 1-minute limit (it may send it up to a minute early).
TINY = ["--baselines", "bare,wd", "--extra-seeds", "bare=1", "--epochs", "24",
        "--subset", "512", "--test-subset", "200", "--activation-images", "16",
        "--checkpoint-epochs", "6", "--lr", "0.05"]
LIMIT = "--time=1 --signal=B:USR1@60"


def requeued_tasks() -> list[str]:
    """Pending tasks of the grid that were requeued (Restarts > 0)."""
    ids = subprocess.run(["squeue", "-h", "-t", "PD", "-n", "al2-grid", "-o", "%i"],
                         capture_output=True, text=True).stdout.split()
    return [i for i in ids if re.search(r"Restarts=[1-9]", subprocess.run(
        ["scontrol", "show", "job", i], capture_output=True, text=True).stdout)]


@pytest.mark.skipif(not RUN, reason="starts a local Slurm: runs in CI (CI=true) or with "
                                    "AL2_SLURM=1")
def test_slurm_array_stopped_at_its_time_limit_requeues_resumes_then_evaluates(tmp_path):
    assert os.geteuid() == 0, "installing and starting Slurm needs root"
    cluster = REPO_ROOT / "scripts" / "slurm" / "local_cluster.sh"
    started = subprocess.run(["bash", str(cluster), "start"], capture_output=True, text=True,
                             timeout=600)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        runs, out = tmp_path / "runs", tmp_path / "eval"
        env = {**os.environ, "WAIT": "1", "LOGS": str(tmp_path), "PYTHON": sys.executable,
               "GRID_SBATCH_ARGS": LIMIT,
               "EVAL_ARGS": "--ablation-images 100 --ablation-draws 1 --no-probe"}
        submit = subprocess.Popen(["bash", str(REPO_ROOT / "scripts" / "slurm" / "submit.sh"),
                                   "2", str(runs), str(out), *TINY], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline, seen, hurried = time.time() + 600, {}, set()
        while submit.poll() is None and time.time() < deadline:
            # A requeued task waits out Slurm's requeue delay (~2 min): started sooner instead,
            # with room to finish (its next start would be warned again, and stopped again). Not
            # at once: a start within a moment of the requeue found the previous run's credential
            # revoked, failed with exit 1, and the afterok evaluation was cancelled (slurmctld:
            # "Killing non-startable batch job ... Job credential revoked").
            for task in requeued_tasks():
                seen.setdefault(task, time.time())
                if task not in hurried and time.time() - seen[task] >= 5:
                    subprocess.run(["scontrol", "update", f"JobId={task}", "TimeLimit=10",
                                    "StartTime=now"], check=True)
                    hurried.add(task)
            time.sleep(0.5)
        stdout, stderr = submit.communicate(timeout=60)
        logs = {p.name: p.read_text() for p in tmp_path.glob("slurm-*.out")}
        assert submit.returncode == 0, stdout + stderr + "".join(logs.values())
        task_logs = [text for text in logs.values() if "al2-grid: task" in text]
        stopped = [text for text in task_logs if "stopped by SIGUSR1" in text]
        assert stopped, "".join(logs.values())          # Slurm's warning stopped a task ...
        for text in stopped:                           # ... which saved, requeued, resumed
            assert "exit 75" in text and "requeued, the next start resumes" in text, text
            assert re.search(r"start 2 on", text) and "trained " in text, text
        assert sorted(p.name for p in (runs / "shards").iterdir()) == \
            ["shard-0-of-2.json", "shard-1-of-2.json"]
        assert len(list(runs.glob("*/metrics.csv"))) == 6
        assert not (out / "MISSING.md").exists()
        assert {r["baseline"] for r in read(out / "table1.csv")} == {"bare", "wd"}
        for name in ("similarity.csv", "ablation.csv", "table1.png"):
            assert (out / name).stat().st_size > 0
    finally:
        subprocess.run(["scancel", "-n", "al2-grid"], timeout=60)
        subprocess.run(["bash", str(cluster), "stop"], timeout=60)
    # the same shards, never stopped: every run's metrics (but wall time) and checkpoints agree
    for k in (0, 1):
        done = main("train", *TINY, "--no-progress", "--shard", f"{k}/2",
                    "--out", str(tmp_path / "whole"))
        assert done.returncode == 0, done.stderr
    for metrics in runs.glob("*/metrics.csv"):
        name = metrics.parent.name
        rows_a, rows_b = read(tmp_path / "whole" / name / "metrics.csv"), read(metrics)
        assert [{**r, "wall_time_s": ""} for r in rows_a] == \
            [{**r, "wall_time_s": ""} for r in rows_b], name
        for checkpoint in (tmp_path / "whole" / name / "checkpoints").iterdir():
            wa = torch.load(checkpoint)["model"]
            wb = torch.load(metrics.parent / "checkpoints" / checkpoint.name)["model"]
            assert all(torch.equal(wa[k], wb[k]) for k in wa), (name, checkpoint.name)
