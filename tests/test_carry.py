"""A grid trained over several GPU leases (code/carry.py): what a lease sends home, what the next
one takes back, and the trunk-only checkpoints the similarity analysis reads."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import al2
from al2.checkpoints import CheckpointError, load_checkpoint, save_torch, slim_checkpoint
from al2.config import GridConfig
from al2.inference import trunk_features
from al2.model import StackedLeNet
from al2.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "code"))
import carry  # noqa: E402  (code/carry.py, a script)

from test_training import TINY, assert_same_run  # noqa: E402


def test_a_grid_carried_between_leases_ends_as_one_uninterrupted(tmp_path, monkeypatch):
    """Lease 1 stops after epoch 1 and exports (in parts smaller than its state); here the parts
    are received; lease 2 starts from a bare folder, imports, resumes and finishes: every run
    ends bit-identical to an uninterrupted grid, and the local folder holds the trunk-only
    checkpoints of epoch 0 and 1 and the whole network at the last epoch."""
    grid = GridConfig(baselines=["bare", "do"], al2="both", epochs=3, lr=0.05, map_start=0.5,
                      checkpoint_every=1, **TINY)
    al2.train_grid(grid, tmp_path / "whole", device="cpu", progress=False)
    with monkeypatch.context() as m:
        m.setattr(al2.training, "out_of_budget", lambda budget, start, done: done == 1)
        al2.train_grid(grid, tmp_path / "lease1", device="cpu", progress=False,
                       time_budget_s=60.0)
    info = carry.export(tmp_path / "lease1", tmp_path / "out1", part_mib=0.5)
    assert info["epoch"] == 1 and not info["finished"] and info["checkpoints"] == 8
    parts = sorted((tmp_path / "out1").glob("state.tar.gz.*"))
    assert len(parts) >= 3 and all(p.stat().st_size <= 0.5 * carry.MIB for p in parts)
    here, bag = tmp_path / "here", tmp_path / "carry"
    got = carry.receive(tmp_path / "out1", bag, here)
    assert got["epoch"] == 1 and not got["finished"]
    assert carry.import_state(bag, tmp_path / "lease2") == 1
    assert (tmp_path / "lease2" / "resume.pt").read_bytes() == \
        (tmp_path / "lease1" / "resume.pt").read_bytes()
    al2.train_grid(grid, tmp_path / "lease2", device="cpu", progress=False, resume=True)
    info = carry.export(tmp_path / "lease2", tmp_path / "out2", part_mib=0.5)
    assert info["finished"] and info["since"] == 1 and info["checkpoints"] == 8  # epochs 2, 3
    assert not list((tmp_path / "out2").glob("state.tar.gz.*"))
    assert carry.receive(tmp_path / "out2", bag, here)["finished"] and not bag.exists()
    for run in grid.runs():
        assert_same_run(tmp_path / "whole" / run.name, tmp_path / "lease2" / run.name, epochs=3)
        assert_same_run(tmp_path / "whole" / run.name, here / run.name, epochs=3)
        assert torch.load(here / run.name / "checkpoints" / "epoch_1.pt")["trunk_only"]
    with pytest.raises(carry.CarryError, match="already holds a grid"):
        carry.import_state(tmp_path / "out1", tmp_path / "lease2")
    # the first lease's files again (or a lease that started afresh): refused, nothing written
    before = sorted(p.stat().st_mtime_ns for p in here.rglob("*"))
    with pytest.raises(carry.CarryError, match="continues a grid from epoch -1"):
        carry.receive(tmp_path / "out1", bag, here)
    assert sorted(p.stat().st_mtime_ns for p in here.rglob("*")) == before


def test_trunk_only_checkpoints_serve_the_similarity_and_refuse_the_ablation(tmp_path):
    grid = GridConfig(baselines=["bn"], al2="on", epochs=1, lr=0.05, **TINY)
    al2.train_grid(grid, tmp_path / "g", device="cpu", progress=False)
    full = tmp_path / "g" / "bn_al2_s0" / "checkpoints" / "epoch_1.pt"
    ckpt = torch.load(full)
    slim = slim_checkpoint(ckpt)
    assert set(slim["model"]) == {k for k in ckpt["model"] if k.startswith("trunk.")}
    save_torch(slim, tmp_path / "slim.pt")
    assert (tmp_path / "slim.pt").stat().st_size < full.stat().st_size / 10
    with pytest.raises(CheckpointError, match="trunk alone"):
        load_checkpoint(tmp_path / "slim.pt")
    x = torch.randn(16, 1, 28, 28)
    trunk_full = trunk_features(StackedLeNet([load_checkpoint(full)[0]]), x)
    trunk_slim = trunk_features(
        StackedLeNet([load_checkpoint(tmp_path / "slim.pt", trunk_only_ok=True)[0]]), x)
    assert torch.equal(trunk_full, trunk_slim)


def test_carry_cli_reports_user_mistakes_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for argv in (["receive", str(tmp_path / "empty"), "--carry", str(tmp_path / "c"), "--runs",
                  str(tmp_path / "r")],
                 ["import", "--carry", str(tmp_path / "empty"), "--runs", str(tmp_path / "r")],
                 ["export", "--runs", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]):
        done = subprocess.run([sys.executable, str(REPO_ROOT / "code" / "carry.py"), *argv],
                              capture_output=True, text=True)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "carry.py: error:" in done.stderr
