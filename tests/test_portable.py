"""The portable CPU mode (al2/training/portable.py): its runs do not depend on the environment
the process starts with, nor on --threads; a stop signal that comes before its restart is kept;
in a process torch started without the pins it refuses in one line instead of running unpinned."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from al2.paths import REPO_ROOT
from al2.training.config import GridConfig, GridError
from al2.training.grid import train_grid
from al2.training.portable import PINS
from al2.training.stopping import STOPPED_EXIT
from conftest import read

TINY = ["--preset", "quick", "--subset", "256", "--test-subset", "200", "--epochs", "1",
        "--baselines", "bare", "--al2", "off", "--extra-seeds", "none",
        "--activation-images", "8", "--no-progress", "--device", "cpu"]
# what a process may start with on another machine, or from another user's shell
OTHER_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE",
             "ONEDNN_MAX_CPU_ISA": "SSE41"}


def train(out, *flags, env=None):
    """train.py on the tiny grid as a subprocess; the run's (metrics rows without wall time,
    epoch-1 weights)."""
    clean = {k: v for k, v in os.environ.items() if k not in PINS}
    done = subprocess.run([sys.executable, str(REPO_ROOT / "code" / "train.py"), *TINY, *flags,
                           "--out", str(out)], capture_output=True, text=True, timeout=600,
                          env={**clean, **(env or {})})
    assert done.returncode == 0, done.stderr
    run = out / "bare_plain_s0"
    rows = [{**r, "wall_time_s": ""} for r in read(run / "metrics.csv")]
    return rows, torch.load(run / "checkpoints" / "epoch_1.pt", weights_only=False)["model"]


def same(a, b) -> bool:
    return a[0] == b[0] and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


def test_portable_runs_ignore_the_start_environment_and_threads(tmp_path):
    """Portable: the same bits from a clean environment and from one that asks for other
    kernels and one thread, in training and in the evaluation. The fast mode under that other
    environment differs from its own default run, so the variation is one that moves unpinned
    bits on this machine."""
    portable = train(tmp_path / "p", "--portable")
    varied = train(tmp_path / "pv", "--portable", "--threads", "1", env=OTHER_ENV)
    assert same(portable, varied)
    fast, fast_varied = train(tmp_path / "f", "--no-portable"), \
        train(tmp_path / "fv", "--no-portable", env=OTHER_ENV)
    assert not same(fast, fast_varied)
    assert not same(portable, fast)
    for folder, env in (("p", None), ("pv", OTHER_ENV)):   # the evaluation: pinned the same
        done = subprocess.run([sys.executable, str(REPO_ROOT / "code" / "evaluate.py"), "--runs",
                               str(tmp_path / folder), "--out", str(tmp_path / f"{folder}-eval"),
                               "--no-probe", "--device", "cpu"], capture_output=True, text=True,
                              timeout=600, env={**os.environ, **(env or {})})
        assert done.returncode == 0, done.stderr
    for name in ("similarity.csv", "ablation.csv"):
        assert (tmp_path / "p-eval" / name).read_bytes() == \
            (tmp_path / "pv-eval" / name).read_bytes()


def test_a_sigterm_before_the_restart_stops_the_portable_grid_resumably(tmp_path):
    """SIGTERM while the first process still loads torch (before it restarts itself pinned):
    exit 75 with one line, and --resume finishes the grid. The evaluation's restart leaves
    SIGTERM to end it."""
    command = [sys.executable, str(REPO_ROOT / "code" / "train.py"), *TINY, "--portable",
               "--out", str(tmp_path / "g")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)   # past the script's first lines (its handlers), within torch's import
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == STOPPED_EXIT, err
    assert err.count("\n") == 1 and "stopped by SIGTERM" in err, err
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    # evaluate.py, which catches no stop signal, restarts pinned with SIGTERM not blocked: a
    # cluster's SIGTERM still ends it
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "code" / "evaluate.py"), "--runs",
                             str(tmp_path / "g"), "--out", str(tmp_path / "eval"), "--device",
                             "cpu"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    environ, status = Path(f"/proc/{proc.pid}/environ"), Path(f"/proc/{proc.pid}/status")
    deadline = time.time() + 120
    while b"ATEN_CPU_CAPABILITY=avx2" not in environ.read_bytes() and time.time() < deadline:
        time.sleep(0.05)
    blocked = int(next(line for line in status.read_text().splitlines()
                       if line.startswith("SigBlk:")).split()[1], 16)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=300)
    assert not blocked & (1 << (signal.SIGTERM - 1)) and proc.returncode == -signal.SIGTERM


@pytest.mark.skipif(all(os.environ.get(k) == v for k, v in PINS.items()),
                    reason="this test process was started pinned")
def test_in_a_process_started_unpinned_the_portable_mode_refuses(tmp_path):
    grid = GridConfig(baselines=["bare"], al2="off", epochs=1, subset=64, test_subset=64,
                      activation_images=4, portable=True)
    with pytest.raises(GridError, match="portable CPU mode needs ATEN_CPU_CAPABILITY=avx2"):
        train_grid(grid, tmp_path / "g", device="cpu", progress=False)
