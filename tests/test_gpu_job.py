"""The paper's GPU job (scripts/gpu_job/): its script rehearsed on the CPU, the step probe, and
the state a grid carries between jobs that do not finish it (carry.py)."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import subprocess
import sys
import sysconfig
import tarfile
from types import SimpleNamespace

import pytest
import torch

import al2
from al2.analyses.checkpoints import CheckpointError, load_checkpoint, load_trunk
from al2.training.config import GridConfig
from al2.files import save_torch
from al2.training.inference import trunk_features
from al2.training.model import StackedLeNet
import al2.speed.variants
from al2.speed.variants import Variants
from al2.paths import REPO_ROOT
from conftest import script
from test_training import TINY, assert_same_run


carry = script("scripts/gpu_job/carry.py")
probe_step = script("code/bench/probe_step.py")
JOB = REPO_ROOT / "scripts" / "gpu_job" / "run.sh"


def test_a_grid_carried_between_jobs_ends_as_one_uninterrupted(tmp_path, monkeypatch):
    """Job 1 stops after epoch 1 and exports (in parts smaller than its state); at home the parts
    are received; job 2 starts from a bare folder, imports, resumes and finishes: every run
    ends bit-identical to an uninterrupted grid, and the home folder holds the trunk-only
    checkpoints of epoch 0 and 1 and the whole network at the last epoch."""
    grid = GridConfig(baselines=["bare", "do"], al2="both", epochs=3, lr=0.05, map_start=0.5,
                      checkpoint_every=1, **TINY)
    al2.train_grid(grid, tmp_path / "whole", device="cpu", progress=False)
    with monkeypatch.context() as m:
        m.setattr(al2.training.grid, "past_budget",
                  lambda elapsed, trained, budget: trained == 1)
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
        kept = torch.load(here / run.name / "checkpoints" / "epoch_1.pt")["model"]
        assert kept and all(k.startswith("trunk.") for k in kept)
    with pytest.raises(carry.CarryError, match="already holds a grid"):
        carry.import_state(tmp_path / "out1", tmp_path / "lease2")
    # the first job's files again (or a job that started afresh): refused, nothing written
    before = sorted(p.stat().st_mtime_ns for p in here.rglob("*"))
    with pytest.raises(carry.CarryError, match="continues a grid from epoch -1"):
        carry.receive(tmp_path / "out1", bag, here)
    assert sorted(p.stat().st_mtime_ns for p in here.rglob("*")) == before


def test_trunk_only_checkpoints_serve_the_similarity_and_refuse_the_ablation(tmp_path):
    grid = GridConfig(baselines=["bn"], al2="on", epochs=1, lr=0.05, **TINY)
    al2.train_grid(grid, tmp_path / "g", device="cpu", progress=False)
    full = tmp_path / "g" / "bn_al2_s0" / "checkpoints" / "epoch_1.pt"
    ckpt = torch.load(full)
    slim = carry.slim_checkpoint(ckpt)
    assert set(slim["model"]) == {k for k in ckpt["model"] if k.startswith("trunk.")}
    save_torch(slim, tmp_path / "slim.pt")
    assert (tmp_path / "slim.pt").stat().st_size < full.stat().st_size / 10
    with pytest.raises(CheckpointError, match="trunk alone"):
        load_checkpoint(tmp_path / "slim.pt")
    x = torch.randn(16, 1, 28, 28)
    trunk_full = trunk_features(StackedLeNet([load_checkpoint(full)[0]]), x)
    slim_model = load_trunk(tmp_path / "slim.pt")[0]
    assert torch.equal(trunk_full, trunk_features(StackedLeNet([slim_model]), x))
    assert torch.isnan(slim_model.head[0].weight).all()   # a use of the missing head shows


def test_carry_cli_reports_user_mistakes_in_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for argv in (["receive", str(tmp_path / "empty"), "--carry", str(tmp_path / "c"), "--runs",
                  str(tmp_path / "r")],
                 ["import", "--carry", str(tmp_path / "empty"), "--runs", str(tmp_path / "r")],
                 ["export", "--runs", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]):
        with pytest.raises(SystemExit) as done:
            carry.main(argv)
        err = capsys.readouterr().err
        assert done.value.code == 2, err
        assert err.count("\n") == 1 and "carry.py: error:" in err


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """An interpreter as on a GPU image where this repository is not installed: `python -S`
    (no site module, so no .pth file runs and the editable install's import hook is inactive)
    with only this interpreter's site-packages directories on the path after the caller's
    PYTHONPATH. Only what run.sh puts on PYTHONPATH makes al2 and svcca importable."""
    packages = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    wrapper = tmp_path_factory.mktemp("bare") / "python"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="${{PYTHONPATH:+$PYTHONPATH:}}'
                       f'{":".join(packages)}" exec {sys.executable} -S "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def bare_env(**env):
    """The environment of a job: this one without PYTHONPATH (nothing of the test's path)."""
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **env}


def test_the_job_path_imports_everything_on_a_machine_without_the_repository_installed(
        bare_python):
    """Every entry point the job runs answers --help under the bare interpreter with the
    PYTHONPATH that run.sh itself exports (its line, read from the script); without that line
    al2 is not importable at all (the bare interpreter is really bare)."""
    done = subprocess.run([bare_python, "-c", "import al2"], capture_output=True, text=True,
                          env=bare_env(), cwd=REPO_ROOT)
    assert done.returncode != 0 and "No module named 'al2'" in done.stderr
    export = next(line for line in JOB.read_text().splitlines()
                  if line.startswith("export PYTHONUNBUFFERED"))
    entry_points = ["code/train.py", "code/bench/probe_step.py", "code/evaluate.py",
                    "code/bench/speed_report.py", "scripts/gpu_job/carry.py"]
    # each entry point as `python ENTRY --help` runs it (as __main__, its folder first on the
    # path), in one interpreter so that torch is imported once
    run_all = ("import runpy, sys\n"
               f"for entry in {entry_points!r}:\n"
               "    sys.argv = [entry, '--help']\n"
               "    sys.path.insert(0, entry.rsplit('/', 1)[0])\n"
               "    try:\n"
               "        runpy.run_path(entry, run_name='__main__')\n"
               "    except SystemExit as e:\n"
               "        assert e.code in (0, None), (entry, e.code)\n"
               "    sys.path.pop(0)\n"
               "    print('answered:', entry)\n")
    done = subprocess.run(["bash", "-c", f'{export}\n"$PY" -c "$RUN_ALL"'],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
                          env=bare_env(PY=bare_python, RUN_ALL=run_all))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert [line for line in done.stdout.splitlines() if line.startswith("answered:")] == \
        [f"answered: {e}" for e in entry_points]


def choice(notes, probe_json=None) -> str:
    """run.sh's choice(): the train.py flags it gives for a probe.json (or none)."""
    if probe_json is not None:
        (notes / "probe.json").write_text(json.dumps(probe_json))
    text = JOB.read_text()
    function = text[text.index("choice() {"):text.index("\n}\n", text.index("choice() {")) + 3]
    done = subprocess.run(["bash", "-c", f"{function}\nchoice"], capture_output=True, text=True,
                          env={**os.environ, "PY": sys.executable, "NOTES": str(notes)})
    assert done.returncode == 0, done.stderr
    return " ".join(done.stdout.split())


def test_without_a_passing_probe_the_job_trains_eagerly(tmp_path):
    """No probe.json (the probe failed or timed out) or a probe whose variants all failed:
    run.sh trains the eager grouped step, which needs no capture; a passing probe's choice is
    replayed as a graph (train.py's default)."""
    assert choice(tmp_path) == "--trunk grouped --no-cuda-graph"
    fallback = {"trunk": "grouped", "cudnn_benchmark": False, "cuda_graph": False,
                "name": "grouped, eager (fallback: no variant passed)"}
    assert choice(tmp_path, {"choice": fallback}) == "--trunk grouped --no-cuda-graph"
    chosen = {"trunk": "streams", "cudnn_benchmark": True, "cuda_graph": True, "name": "x"}
    assert choice(tmp_path, {"choice": chosen}) == "--trunk streams --cudnn-benchmark"
    flat = {**chosen, "cudnn_benchmark": False, "optimizer": "flat"}
    assert choice(tmp_path, {"choice": flat}) == "--trunk streams --optimizer flat"
    (tmp_path / "probe.json").write_text("{truncated")
    assert choice(tmp_path) == "--trunk grouped --no-cuda-graph"


def cpu_stands_in_for_cuda(monkeypatch, capture_error: str):
    """The CUDA-graph path on the CPU up to the capture: streams are no-ops (the warm-up steps run
    eagerly and change the weights), and the capture itself raises `capture_error`."""
    class Stream:
        def wait_stream(self, other):
            pass

    def refuse(*args, **kwargs):
        raise RuntimeError(capture_error)
    monkeypatch.setattr(al2.speed.variants, "graph_capture_possible", lambda device: True)
    monkeypatch.setattr(torch.cuda, "Stream", lambda *a, **k: Stream())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a, **k: Stream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", refuse)


def test_a_failed_capture_trains_eagerly_from_the_same_state(tmp_path, monkeypatch, capfd):
    """A capture that fails after its warm-up steps costs nothing but speed: one line on
    stderr, the warm-up undone, and the grid trains eagerly to the same end as a grid trained
    eagerly from the start; config.json records the step and the error."""
    grid = GridConfig(baselines=["bare", "do"], al2="both", epochs=2, lr=0.05, **TINY)
    al2.train_grid(grid, tmp_path / "eager", device="cpu", progress=False,
                   speed=Variants(cuda_graph=False))
    with monkeypatch.context() as m:
        cpu_stands_in_for_cuda(m, "CUDA error: operation not permitted when stream is capturing")
        al2.train_grid(grid, tmp_path / "fallback", device="cpu", progress=False,
                       speed=Variants(cuda_graph=True))
    err = capfd.readouterr().err
    assert err.count("the CUDA graph capture failed") == 1 and "runs eagerly" in err, err
    for run in grid.runs():
        assert_same_run(tmp_path / "eager" / run.name, tmp_path / "fallback" / run.name, 2)
    env = json.loads((tmp_path / "fallback" / "bare_al2_s0" / "config.json").read_text())[
        "environment"]
    assert env["cuda_graph"] is False and "not permitted" in env["cuda_graph_error"]


PROBE = dict(trunks="grouped,streams", runs=1, steps=1, warmup=1, check_steps=1, rtol=1e-9,
             project_runs=8, budget_s=600.0)


@pytest.mark.parametrize("failing", ["reference", "check", "timing", "projection", "capture"])
def test_the_probe_survives_any_one_failing_measurement(monkeypatch, failing):
    """Whichever one measurement raises (the float64 reference, a variant's check or timing,
    the projection, a variant's graph capture), the probe still returns every row, a choice
    and its table; the failure is named there. A failed reference leaves nothing checked: the
    choice is the eager step."""
    def boom(*args, **kwargs):
        raise RuntimeError(f"{failing} refused")
    if failing == "reference":
        monkeypatch.setattr(probe_step, "run_check", boom)
    elif failing == "check":
        check = probe_step.check
        monkeypatch.setattr(probe_step, "check", lambda v, *a: boom() if v["trunk"] == "streams"
                            else check(v, *a))
    elif failing in ("timing", "projection"):
        timing = probe_step.time_variant
        monkeypatch.setattr(probe_step, "time_variant", lambda v, runs, *a: boom() if (
            v["trunk"] == "streams" if failing == "timing" else runs == 8) else
            timing(v, runs, *a))
    else:  # the streams trainer fell back to the eager step: not that variant's speed
        class FellBack(probe_step.Variants):
            def __call__(self, trainer):
                env = super().__call__(trainer)
                return {**env, "cuda_graph_error": "RuntimeError: capture refused"} \
                    if self.trunk == "streams" else env
        monkeypatch.setattr(probe_step, "Variants", FellBack)
    result = probe_step.probe(SimpleNamespace(**PROBE), torch.device("cpu"))
    result["table"] = table = probe_step.table(result)
    rows = {r["trunk"]: r for r in result["rows"]}
    assert set(rows) == {"grouped", "streams"} and "Chosen:" in table
    assert len(result["errors"]) == 1 and "refused" in result["errors"][0], result["errors"]
    assert "Failed measurements" in table and "refused" in table
    if failing == "reference":
        assert not any(r["passed"] for r in rows.values())
        assert result["choice"]["cuda_graph"] is False and "fallback" in result["choice"]["name"]
    elif failing == "projection":
        assert all(r["passed"] for r in rows.values()) and "failed" in table
        assert result["choice"]["cuda_graph"] is True
    else:
        assert rows["grouped"]["passed"] and not rows["streams"]["passed"]
        assert result["choice"]["trunk"] == "grouped"
        assert result["projection"]["steps_per_s"] > 0


def test_on_cuda_the_probe_also_decides_the_optimiser():
    """On CUDA every trunk is a candidate with and without cuDNN's search and with either
    optimiser (the flat one is no default anywhere until the probe finds it faster); on the CPU
    only the trunks, with torch.optim.SGD, the CPU bench's default."""
    cuda = probe_step.variants(["grouped", "streams"], torch.device("cuda"))
    assert len(cuda) == 9 and {v["optimizer"] for v in cuda} == {"torch", "flat"}
    assert sum(probe_step.name(v).endswith("+ flat SGD") for v in cuda) == 4
    assert [v for v in cuda if not v["cuda_graph"]] == [cuda[0]]  # the plain step, timed too
    cpu = probe_step.variants(["grouped", "streams"], torch.device("cpu"))
    assert [(v["trunk"], v["optimizer"]) for v in cpu] == [("grouped", "torch"),
                                                          ("streams", "torch")]


def test_the_probe_chooses_a_variant_only_when_it_beats_the_plain_step_by_ten_percent():
    plain = {"name": "plain", "cuda_graph": False, "steps_per_s": 100.0}
    graph = {"name": "graph", "cuda_graph": True, "steps_per_s": 109.0}
    assert probe_step.pick([plain, graph])["name"] == "plain"
    assert probe_step.pick([plain, {**graph, "steps_per_s": 111.0}])["name"] == "graph"
    assert probe_step.pick([graph])["name"] == "graph"  # no plain step timed (the CPU)


def test_the_probe_keeps_its_time_budget():
    """A probe whose budget is spent skips the variants left (named in its table) and chooses
    the eager step; it never runs on past its budget into the job's training time."""
    result = probe_step.probe(SimpleNamespace(**{**PROBE, "budget_s": 0.0}), torch.device("cpu"))
    assert all(r["error"].startswith("skipped") for r in result["rows"])
    assert result["choice"]["cuda_graph"] is False and not result["projection"]
    assert "skipped: the probe's 0 s were spent" in probe_step.table(result)


def job(out, minutes, tmp, python=sys.executable, **env):
    """scripts/gpu_job/run.sh on the CPU on a tiny grid (6 runs, 2 epochs of 640 images) and a
    probe of 2 steps per variant, with `python` (the bare interpreter: as on a GPU image)."""
    env = {**bare_env(), "PYTHON": python, "DEVICE": "cpu", "RUNS": str(tmp / "runs"),
           "RESULTS": str(tmp / "results"), "NOTES": str(tmp / "notes"),
           "TRAIN_ARGS": "--baselines bare,do --extra-seeds bare=1 --epochs 2 --subset 640 "
                         "--test-subset 500 --activation-images 100 --checkpoint-epochs 1",
           "EVAL_ARGS": "--similarity-images 100 --ablation-images 100 --ablation-draws 1 "
                        "--probe-images 100",
           "PROBE_ARGS": "--runs 8 --steps 2 --warmup 1 --check-steps 1 --project-runs 0 "
                         "--trunks grouped,streams", **env}
    done = subprocess.run(["bash", str(JOB), str(out), str(minutes)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def packed(out) -> dict:
    """name -> bytes of the results archive the job packed into `out`."""
    with tarfile.open(out / "paper-results.tar.gz") as tar:
        return {m.name.removeprefix("./"): tar.extractfile(m).read()
                for m in tar.getmembers() if m.isfile()}


def test_the_job_script_rehearses_on_the_cpu(tmp_path, bare_python):
    """The whole job on the CPU, as on a GPU image without the repository installed (the bare
    interpreter): a first call whose budget ends after epoch 1 (probe, training stopped,
    evaluation of what is there with MISSING.md, the state exported beside the results), then
    the same call again, which resumes on the same run folder without probing again, finishes,
    evaluates and packs results only."""
    job(tmp_path / "out1", 3, tmp_path, bare_python, TRAIN_MINUTES="0.0001")
    first = packed(tmp_path / "out1")
    assert "MISSING.md" in first and "has not finished" in first["MISSING.md"].decode()
    assert any(p.name.startswith("state.tar.gz.") for p in (tmp_path / "out1").iterdir())
    job(tmp_path / "out2", 3, tmp_path, bare_python)
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == ["job.log",
                                                                      "paper-results.tar.gz"]
    files = packed(tmp_path / "out2")
    runs = sorted(n.split("/")[1] for n in files if n.endswith("metrics.csv"))
    assert len(runs) == 6 and all(f"runs/{r}/config.json" in files for r in runs)
    for name in ("table1.csv", "table1.md", "table1.png", "curves.png", "similarity.csv",
                 "similarity.png", "ablation.csv", "ablation.png", "speed.md"):
        assert files.get(name), name
    assert "MISSING.md" not in files
    assert {f.split(".")[-1] for f in files} <= {"csv", "md", "png", "json"}   # results only
    rows = list(csv.DictReader(io.StringIO(files["runs/bare_al2_s1/metrics.csv"].decode())))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    speed = files["speed.md"].decode()
    assert "| grouped | passed" in speed and "| streams | passed" in speed and "Chosen:" in speed
    assert "2 calls" in speed
    log = (tmp_path / "out2" / "job.log").read_text()
    assert log.count("probe: every step variant") == 1          # the second call reused it
    config = json.loads(files["runs/bare_al2_s1/config.json"])
    assert config["resumes"][0]["after_epoch"] == 1
    assert config["environment"]["trunk"] == json.loads(
        (tmp_path / "notes" / "probe.json").read_text())["choice"]["trunk"]


def test_the_probe_fails_a_variant_that_computes_another_function(monkeypatch):
    """The probe's float64 check against the stacked eager step can fail: a "streams" trunk that
    hands the runs' features to the head in the wrong order is refused, the correct one passes
    (CPU: the variants' static-buffer path)."""
    from dataclasses import asdict
    grid = GridConfig(**{**asdict(al2.training.presets.grid_of_size(14)), "subset": 64,
                         "test_subset": 64})
    cpu = torch.device("cpu")
    reference = probe_step.run_check(probe_step.float64_trainer(grid, cpu, "grouped", False), 1)
    variant = {"trunk": "streams", "cudnn_benchmark": False}
    assert probe_step.check(variant, grid, cpu, 1, reference) < 1e-12
    from al2.speed.trunks import Streams
    streams = Streams.__call__  # (N, R*50, 4, 4): hand run R-1's channels to run 0's head, ...
    monkeypatch.setattr(Streams, "__call__",
                        lambda self, x: streams(self, x).unflatten(1, (-1, 50)).flip(1)
                        .flatten(1, 2))
    assert probe_step.check(variant, grid, cpu, 1, reference) > 1e-6
