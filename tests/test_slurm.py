"""The repository's own Slurm scripts on a real single-node Slurm (Debian's packages): an array
job trains a tiny grid as 2 shards, the evaluation job runs after it (afterok), the merged
outputs are complete. Installs and starts daemons, so it runs where CI runs it (CI=true) or
with AL2_SLURM=1; it stops the daemons it started."""
import csv
import os
import subprocess
import sys

import pytest

from al2.paths import REPO_ROOT

RUN = os.environ.get("CI") == "true" or os.environ.get("AL2_SLURM") == "1"
TINY = ["--baselines", "bare,wd", "--extra-seeds", "bare=1", "--epochs", "2", "--subset", "256",
        "--test-subset", "200", "--activation-images", "16", "--checkpoint-epochs", "1",
        "--lr", "0.05"]


@pytest.mark.skipif(not RUN, reason="starts a local Slurm: runs in CI (CI=true) or with "
                                    "AL2_SLURM=1")
def test_slurm_array_trains_the_shards_then_evaluates(tmp_path):
    assert os.geteuid() == 0, "installing and starting Slurm needs root"
    cluster = REPO_ROOT / "scripts" / "slurm" / "local_cluster.sh"
    started = subprocess.run(["bash", str(cluster), "start"], capture_output=True, text=True,
                             timeout=600)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        runs, out = tmp_path / "runs", tmp_path / "eval"
        env = {**os.environ, "WAIT": "1", "LOGS": str(tmp_path), "PYTHON": sys.executable,
               "EVAL_ARGS": "--ablation-images 100 --ablation-draws 1"}
        done = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "slurm" / "submit.sh"), "2",
                               str(runs), str(out), *TINY], env=env, capture_output=True,
                              text=True, timeout=600)
        logs = "".join(p.read_text() for p in tmp_path.glob("slurm-*.out"))
        assert done.returncode == 0, done.stdout + done.stderr + logs
        assert sorted(p.name for p in (runs / "shards").iterdir()) == \
            ["shard-0-of-2.json", "shard-1-of-2.json"]
        assert len(list(runs.glob("*/metrics.csv"))) == 6
        assert not (out / "MISSING.md").exists()
        with open(out / "table1.csv") as f:
            assert {r["baseline"] for r in csv.DictReader(f)} == {"bare", "wd"}
        for name in ("similarity.csv", "ablation.csv", "table1.png"):
            assert (out / name).stat().st_size > 0
    finally:
        subprocess.run(["bash", str(cluster), "stop"], timeout=60)
