"""Shards of a grid: the split, N processes into one folder equal the whole grid, the lock,
evaluate.py on a folder with a shard missing, bad input."""
import subprocess
import sys
import time

import pytest
import torch

import al2
import al2.analyses.runs
from al2.training.config import GridConfig, GridError
from al2.training.presets import PRESETS
from al2.paths import REPO_ROOT
from al2.training.shards import shard_runs
from conftest import evaluate, main, read

TINY = ["--baselines", "bare,do", "--extra-seeds", "bare=1", "--epochs", "2",
        "--subset", "256", "--test-subset", "200", "--activation-images", "16",
        "--checkpoint-epochs", "1", "--lr", "0.05", "--no-progress"]


def train(*args, **kwargs):
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "code" / "train.py"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_the_split_is_disjoint_complete_and_keeps_bare_together():
    runs = GridConfig(**PRESETS["paper"]).runs()                # 14 runs, Bare 8 of them
    for n in (1, 2, 3, 4, 5, 14):
        parts = [shard_runs(runs, k, n) for k in range(n)]
        names = [r.name for part in parts for r in part]
        assert sorted(names) == sorted(r.name for r in runs) and len(set(names)) == len(runs)
        assert all(parts), n
        if n <= 4:  # as many shards as baselines or fewer: each baseline in one shard
            for b in ("bare", "bn", "do", "wd"):
                assert sum(any(r.baseline == b for r in part) for part in parts) == 1, (n, b)
    assert [r.name for r in shard_runs(runs, 0, 2)][:8] == [r.name for r in runs][:8]
    for k, n in ((2, 2), (0, 0), (-1, 3), (0, 15)):
        with pytest.raises(GridError):
            shard_runs(runs, k, n)


def test_two_concurrent_shards_equal_the_whole_grid(tmp_path):
    """Two processes, shard 0/2 and 1/2, into one folder at the same time: every run's metrics
    and final weights agree with the whole grid's (float32: a different stacking rounds
    differently, so to the engine tests' tolerance), and evaluate.py gives the same Table 1."""
    whole = train(*TINY, "--out", str(tmp_path / "whole"))
    shards = [train(*TINY, "--out", str(tmp_path / "sharded"), "--shard", f"{k}/2")
              for k in (0, 1)]
    for p in [whole, *shards]:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    names = sorted(p.parent.name for p in (tmp_path / "whole").glob("*/metrics.csv"))
    assert names == sorted(p.parent.name for p in (tmp_path / "sharded").glob("*/metrics.csv"))
    assert len(names) == 6
    for name in names:
        a = read(tmp_path / "whole" / name / "metrics.csv")
        b = read(tmp_path / "sharded" / name / "metrics.csv")
        for ra, rb in zip(a, b):
            for column in ("train_Lc", "train_Lr", "test_loss"):
                if ra[column] != "nan":
                    assert float(ra[column]) == pytest.approx(float(rb[column]), rel=1e-3)
            assert abs(float(ra["test_acc"]) - float(rb["test_acc"])) <= 1.0
        wa = torch.load(tmp_path / "whole" / name / "checkpoints" / "epoch_2.pt")["model"]
        wb = torch.load(tmp_path / "sharded" / name / "checkpoints" / "epoch_2.pt")["model"]
        assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=5e-4) for k in wa), name
    assert sorted(p.name for p in (tmp_path / "sharded" / "shards").iterdir()) == \
        ["shard-0-of-2.json", "shard-1-of-2.json"]
    for folder in ("whole", "sharded"):
        done = evaluate("--runs", str(tmp_path / folder), "--out", str(tmp_path / f"e-{folder}"),
                        "--no-similarity", "--no-ablation", "--no-probe")
        assert done.returncode == 0, done.stderr
    ta = [read(tmp_path / f"e-{f}" / "table1.csv") for f in ("whole", "sharded")]
    assert [r["baseline"] + r["metric"] + r["al2"] + r["epoch"] for r in ta[0]] == \
        [r["baseline"] + r["metric"] + r["al2"] + r["epoch"] for r in ta[1]]
    for ra, rb in zip(*ta):
        assert float(ra["ours"]) == pytest.approx(float(rb["ours"]), rel=1e-3, abs=1.0)


def test_missing_shard_second_process_and_bad_input(tmp_path):
    """With shard 1/2 missing, evaluate.py writes what it can, names the missing runs and exits
    2; a second process on a shard that is running is refused (a lock); K >= N, N < 1, another
    split or another grid in the folder: one line, exit 2, the other shard's files untouched."""
    out = tmp_path / "g"
    first = train(*TINY, "--out", str(out), "--shard", "0/2")
    assert first.communicate(timeout=600)[0] is not None and first.returncode == 0
    done = evaluate("--runs", str(out), "--out", str(tmp_path / "e"), "--no-ablation",
                    "--no-probe")
    assert done.returncode == 2
    missing = (tmp_path / "e" / "MISSING.md").read_text()
    part = [r.name for r in shard_runs(al2.analyses.runs.discover_runs(out)[0].grid.runs(), 1, 2)]
    assert part and all(name in missing for name in part)
    assert (tmp_path / "e" / "table1.csv").exists()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    for args, message in ((["--shard", "2/2"], "0 <= K < N"), (["--shard", "0/0"], "N >= 1"),
                          (["--shard", "0/3"], "split into 2"),
                          (["--shard", "0/2"], "--resume"),
                          (["--shard", "1/2", "--epochs", "3"], "different grid")):
        done = main("train", *TINY, "--out", str(out), *args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    slow = [a if a != "2" else "40" for a in TINY]                     # 40 epochs: a while
    running = train(*slow, "--out", str(tmp_path / "lock"), "--shard", "1/2")
    try:
        deadline = time.time() + 120
        while not list((tmp_path / "lock").glob("*/metrics.csv")) and time.time() < deadline:
            time.sleep(0.2)
        second = main("train", *slow, "--out", str(tmp_path / "lock"), "--shard", "1/2",
                      "--resume")
        assert second.returncode == 2 and "another process" in second.stderr, second.stderr
    finally:
        running.kill()
        running.communicate()
