"""Surviving the world under a run: a stop signal (a cluster's time limit or preemption, Ctrl-C)
costs at most the step under way and --resume then ends bit for bit where the uninterrupted
grid ends; a write that fails (a full disk) ends in one line, exit 2, with the state before it
intact, and evaluate.py reads what is left without a traceback."""
import errno
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

import al2
import al2.files
import al2.analyses.runs
from al2.training.config import GridConfig
from al2.paths import REPO_ROOT
from al2.training.stopping import STOPPED_EXIT, StopOnSignal
from conftest import evaluate, main, read
from test_training import TINY

EPOCHS, STEPS = 3, 4                  # TINY: 256 images, batch 64: 4 steps an epoch
GRIDS = {
    "plain": dict(baselines=["bare", "do"], al2="both"),
    "replicates": dict(baselines=["bare", "do", "mixup"], al2="both", replicates=2,
                       validation=64),
    "shard": dict(baselines=["bare", "do", "wd"], al2="both"),
}


class SignalOnCheck(StopOnSignal):
    """StopOnSignal that sends this process a real SIGTERM at its k-th check (one check before
    every step and one after every epoch but the last): the handler, not the test, stops it."""

    def __init__(self, k: int):
        super().__init__()
        self.k, self.checks = k, 0

    def check(self) -> bool:
        self.checks += 1
        if self.checks == self.k:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().check()


def grid_of(kind: str) -> GridConfig:
    return GridConfig(**GRIDS[kind], extra_seeds={}, epochs=EPOCHS, lr=0.05, map_start=0.5,
                      checkpoint_every=2, **TINY)


def assert_same_folder(a, b, runs) -> None:
    """Every run's metrics (but wall time), every checkpoint and activation file, and the final
    resume state (weights, momentum, BN statistics, history but wall time) are bit-identical."""
    for run in runs:
        rows_a, rows_b = read(a / run.name / "metrics.csv"), read(b / run.name / "metrics.csv")
        assert len(rows_a) == len(rows_b) == EPOCHS + 1
        for ra, rb in zip(rows_a, rows_b):
            ra.pop("wall_time_s"), rb.pop("wall_time_s")
            assert ra == rb, run.name
        for kind in ("checkpoints", "activations"):
            names = sorted(p.name for p in (a / run.name / kind).iterdir())
            assert names == sorted(p.name for p in (b / run.name / kind).iterdir())
            for name in names:
                ta = torch.load(a / run.name / kind / name)
                tb = torch.load(b / run.name / kind / name)
                if kind == "checkpoints":
                    ta, tb = ta["model"], tb["model"]
                    assert all(torch.equal(ta[k], tb[k]) for k in ta), (run.name, name)
                else:
                    assert torch.equal(ta, tb), (run.name, name)
    states = sorted(p.name for p in a.glob("resume*.pt"))
    assert states == sorted(p.name for p in b.glob("resume*.pt")) and states
    for name in states:
        sa, sb = torch.load(a / name), torch.load(b / name)
        assert sa["epoch"] == sb["epoch"] == EPOCHS and sa["partial"] is sb["partial"] is None
        assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])
        assert all(torch.equal(x, y) for x, y in zip(sa["momentum"], sb["momentum"]))
        for ha, hb in zip(sa["history"], sb["history"]):
            assert str([{**r, "wall_time_s": 0} for r in ha]) == \
                str([{**r, "wall_time_s": 0} for r in hb])                  # NaN == NaN here


@pytest.mark.parametrize("kind", sorted(GRIDS))
def test_a_signal_at_a_random_step_then_resume_equals_the_uninterrupted_grid(tmp_path, kind):
    """A real SIGTERM at a random check (a seeded draw, printed on failure): the grid finishes
    the step under way, saves, returns with the signal named; a resume in another call ends
    bit-identical to a grid never stopped. Plain (with dropout), replicates (each its own
    order and masks, mixup, a validation set) and one shard of a grid."""
    grid = grid_of(kind)
    shard = (0, 2) if kind == "shard" else None
    train = dict(device="cpu", progress=False, shard=shard)
    al2.train_grid(grid, tmp_path / "a", **train)
    k = random.Random(kind).randint(2, EPOCHS * (STEPS + 1) - 1)
    with SignalOnCheck(k) as stop:
        summary = al2.train_grid(grid, tmp_path / "b", stop=stop, **train)
    assert summary["signal"] == "SIGTERM", k
    assert summary["stopped_at"] is not None, k
    state = torch.load(next((tmp_path / "b").glob("resume*.pt")))
    if isinstance(summary["stopped_at"], tuple):  # inside an epoch: the step it got to
        epoch, step = summary["stopped_at"]
        assert state["epoch"] == epoch - 1 and state["partial"]["steps"] == step, k
    else:
        assert state["epoch"] == summary["stopped_at"] and state["partial"] is None, k
    summary = al2.train_grid(grid, tmp_path / "b", resume=True, **train)
    assert summary["stopped_at"] is None and summary["signal"] is None
    runs = grid.runs() if shard is None else al2.training.shards.shard_runs(grid.runs(), *shard)
    assert_same_folder(tmp_path / "a", tmp_path / "b", runs)


def test_every_stop_point_of_an_epoch_continues_exactly(tmp_path):
    """Before each step of an epoch and at the epoch's end (checks 5..10 of the plain grid):
    every one resumes to the same end (the float64 proof of the stacked step is elsewhere;
    this is the bookkeeping: sums, dropout streams, step index)."""
    grid = grid_of("plain")
    al2.train_grid(grid, tmp_path / "a", device="cpu", progress=False)
    seen = set()
    for k in range(STEPS + 1, 2 * (STEPS + 1) + 1):
        out = tmp_path / f"k{k}"
        with SignalOnCheck(k) as stop:
            seen.add(str(al2.train_grid(grid, out, device="cpu", progress=False,
                                        stop=stop)["stopped_at"]))
        al2.train_grid(grid, out, device="cpu", progress=False, resume=True)
        assert_same_folder(tmp_path / "a", out, grid.runs())
    assert seen == {"1", "(2, 0)", "(2, 1)", "(2, 2)", "(2, 3)", "2"}


def test_a_second_ctrl_c_interrupts_at_once_and_handlers_come_back():
    """The first Ctrl-C asks to stop, the second interrupts; on leaving, the handlers are those
    before; a signal the process ignores (Ctrl-C in a background job, as CI runs) stays so."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with StopOnSignal() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.requested == "SIGINT"
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with StopOnSignal():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, before)


def test_train_py_stops_on_sigterm_with_its_exit_code_and_resumes(tmp_path):
    """train.py as a user's cluster runs it: SIGTERM during training -> one line naming the
    signal and the resume, exit 75; the same command plus --resume finishes the grid, equal to
    a grid never stopped."""
    args = ["--baselines", "bare,do", "--extra-seeds", "none", "--epochs", "6",
            "--subset", "256", "--test-subset", "200", "--activation-images", "8",
            "--checkpoint-epochs", "3", "--lr", "0.05", "--map-start", "0.5", "--no-progress"]
    command = [sys.executable, str(REPO_ROOT / "code" / "train.py"), *args,
               "--out", str(tmp_path / "b")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "b" / "bare_plain_s0" / "metrics.csv"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and \
            (not metrics.exists() or len(read(metrics)) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == STOPPED_EXIT, err
    assert err.count("\n") == 1 and "stopped by SIGTERM" in err and "--resume" in err, err
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert main("train", *args, "--out", str(tmp_path / "a")).returncode == 0
    for run in ("bare_plain_s0", "bare_al2_s0", "do_plain_s0", "do_al2_s0"):
        rows_a, rows_b = read(tmp_path / "a" / run / "metrics.csv"), read(metrics.parent.parent /
                                                                          run / "metrics.csv")
        assert [{**r, "wall_time_s": ""} for r in rows_a] == \
            [{**r, "wall_time_s": ""} for r in rows_b]


class FullDisk:
    """al2.files.write_bytes failing as a full disk does (ENOSPC) from its n-th call on."""

    def __init__(self, n: int):
        self.n, self.calls, self.write = n, 0, al2.files.write_bytes

    def __call__(self, f, data):
        self.calls += 1
        if self.calls >= self.n:
            f.write(bytes(data)[:len(data) // 2])        # part of it reached the disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.write(f, data)


def snapshot(folder):
    """Every file under folder: path -> bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("n", [22, 31])
def test_a_failed_write_ends_in_one_line_keeps_the_state_and_resume_continues(
        tmp_path, monkeypatch, n):
    """The n-th file write fails with ENOSPC (22: a metrics.csv of epoch 1; 31: a checkpoint of
    epoch 2): train.py says which file and why in one line and exits 2; no temporary file is
    left and every file then on disk is complete; evaluate.py on the folder ends in one line or
    MISSING.md, never a traceback; --resume (space freed) ends equal to an uninterrupted grid."""
    args = ["--baselines", "bare,do", "--extra-seeds", "none", "--epochs", str(EPOCHS),
            "--subset", "256", "--test-subset", "200", "--activation-images", "8",
            "--checkpoint-epochs", "2", "--lr", "0.05", "--map-start", "0.5", "--no-progress"]
    assert main("train", *args, "--out", str(tmp_path / "a")).returncode == 0
    with monkeypatch.context() as m:
        m.setattr(al2.files, "write_bytes", FullDisk(n))
        failed = main("train", *args, "--out", str(tmp_path / "b"))
    assert failed.returncode == 2, failed.stderr
    assert failed.stderr.count("\n") == 1 and "No space left on device" in failed.stderr
    assert "cannot write " in failed.stderr and "--resume" in failed.stderr
    assert not list((tmp_path / "b").rglob("*.tmp"))
    left = snapshot(tmp_path / "b")
    for path in left:
        if path.suffix == ".pt":
            torch.load(tmp_path / "b" / path)                 # complete, loadable
    done = evaluate("--runs", str(tmp_path / "b"), "--out", str(tmp_path / "eval"),
                    "--ablation-images", "50", "--ablation-draws", "1")
    assert "Traceback" not in done.stderr
    assert done.returncode == 2 and done.stderr.strip(), done.stderr
    assert (tmp_path / "eval" / "MISSING.md").exists() or done.stderr.count("\n") == 1, \
        done.stderr
    assert snapshot(tmp_path / "b") == left                  # evaluate.py changed nothing
    assert main("train", *args, "--out", str(tmp_path / "b"), "--resume").returncode == 0
    assert_same_folder(tmp_path / "a", tmp_path / "b",
                       al2.analyses.runs.discover_runs(tmp_path / "a"))


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    """atomic_write: a write failing part-way keeps the previous file byte for byte, removes its
    temporary file, and names the file and the cause."""
    path = tmp_path / "resume.pt"
    al2.files.save_torch({"epoch": 1}, path)
    before = path.read_bytes()
    monkeypatch.setattr(al2.files, "write_bytes", FullDisk(1))
    with pytest.raises(al2.files.WriteError, match=r"cannot write .*resume\.pt: No space left"):
        al2.files.save_torch({"epoch": 2}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["resume.pt"]


def test_a_grid_restored_from_a_snapshot_continues_bit_for_bit(tmp_path):
    """A grid stopped by SIGTERM inside epoch 2, saved as a snapshot (resume state and records,
    no checkpoints), restored into a new folder and resumed ends bit-identical to the grid never
    stopped: metrics, the checkpoints written after the restore, the final resume state. A
    folder being trained, a folder that is not empty and a damaged snapshot are refused in one
    line, exit 2."""
    grid = grid_of("plain")
    al2.train_grid(grid, tmp_path / "a", device="cpu", progress=False)
    with SignalOnCheck(STEPS + 3) as stop:          # epoch 2, before its step 2
        summary = al2.train_grid(grid, tmp_path / "b", stop=stop, device="cpu", progress=False)
    assert summary["stopped_at"] == (2, 1)
    snap = tmp_path / "grid.tar.gz"
    done = main("snapshot", "save", str(tmp_path / "b"), str(snap))
    assert done.returncode == 0 and "saved" in done.stdout, done.stderr
    done = main("snapshot", "restore", str(snap), str(tmp_path / "c"))
    assert done.returncode == 0, done.stderr
    assert not list((tmp_path / "c").glob("*/checkpoints/*")) and not list(
        (tmp_path / "c").glob("*/activations/*"))
    al2.train_grid(grid, tmp_path / "c", resume=True, device="cpu", progress=False)
    for run in grid.runs():     # the files of epochs 2 and 3 are new; those of epochs 0 and
        for kind in ("checkpoints", "activations"):     # 1, not in a snapshot, copied to compare
            ours = sorted(p.name for p in (tmp_path / "c" / run.name / kind).iterdir())
            assert ours == ["epoch_2.pt", "epoch_3.pt"]
            for old in ("epoch_0.pt", "epoch_1.pt"):
                (tmp_path / "c" / run.name / kind / old).write_bytes(
                    (tmp_path / "a" / run.name / kind / old).read_bytes())
    assert_same_folder(tmp_path / "a", tmp_path / "c", grid.runs())
    done = main("snapshot", "restore", str(snap), str(tmp_path / "c"))
    assert done.returncode == 2 and "is not empty" in done.stderr
    snap.write_bytes(snap.read_bytes()[:2000])
    done = main("snapshot", "restore", str(snap), str(tmp_path / "d"))
    assert done.returncode == 2 and "damaged" in done.stderr and "Traceback" not in done.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith((".d", "d"))] == []
    with al2.training.lock.FolderLock(tmp_path / "b", "whole", wait=True):
        done = main("snapshot", "save", str(tmp_path / "b"), str(tmp_path / "e.tar.gz"))
    assert done.returncode == 2 and "another process" in done.stderr
    assert not (tmp_path / "e.tar.gz").exists()
