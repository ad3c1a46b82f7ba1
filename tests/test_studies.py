"""The studies' own measurements (code/studies/diagnose_collapse.py, code/studies/study_ramps.py,
code/studies/claims.py) against independent computations: the AL2 term's gradient at the trunk
output in closed form, the probe changing no weight, the ramp study's choice and intervals
recomputed from its run folders, the claims' figures recomputed from the committed CSVs."""
import math
import re

import pytest
import torch
from scipy import stats

import al2.training.plan
from al2.training.config import GridConfig
from al2.training.presets import PRESETS
from al2.training.data import load_grid_data
from al2.paths import REPO_ROOT
from al2.analyses.runs import discover_runs
from al2.training.stack import Trainer
from conftest import main, read, script


def test_the_probe_gives_the_closed_form_al2_gradient_and_changes_no_weight():
    """d(w mean(a^2))/da = 2 w a / (n * 800): its norm is 2 w ||a|| / (n * 800) per run; the
    fit loss's gradient is the autograd of that loss alone; the weights and their gradients
    are untouched."""
    diagnose = script("code/studies/diagnose_collapse.py")
    grid = GridConfig(**{**PRESETS["remedies-quick"], "baselines": ["bare", "gce", "mixup"],
                         "replicates": 1, "subset": 128, "validation": 0})
    runs = grid.runs()
    trainer = Trainer(grid, runs, load_grid_data(grid, torch.device("cpu"),
                                                 label_seeds=al2.training.plan.label_seeds(runs)))
    trainer.train_epoch(0, torch.full((len(runs),), 0.5))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    grads = [q.grad.clone() for q in trainer.model.parameters()]   # the last step's
    w = torch.tensor([0.0, 2.0] * 3)
    p = diagnose.probe(trainer, w, 64)
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert all(torch.equal(q.grad, g) for q, g in zip(trainer.model.parameters(), grads))
    trainer.model.eval()
    with torch.no_grad():
        _, features = trainer.model(trainer.batch(torch.arange(64)[None]).x)   # (64, R, 800)
    expected = 2 * w * features.pow(2).sum((0, 2)).sqrt() / (64 * 800)
    assert torch.allclose(p["grad_al2"], expected, rtol=1e-5)
    assert torch.allclose(p["mean_sq"], features.pow(2).mean((0, 2)), rtol=1e-6)
    assert torch.allclose(p["active"], (features > 0).float().mean((0, 2)))
    # the fit gradient of the first run (cross-entropy): autograd of its loss alone
    f = features[:, 0].clone().requires_grad_(True)
    labels = trainer.data.train_noisy[0][:64]
    loss = torch.nn.functional.nll_loss(trainer.model.head(
        torch.stack([f] + [features[:, r] for r in range(1, len(runs))], 1))[0], labels)
    g, = torch.autograd.grad(loss, f)
    assert p["grad_fit"][0].item() == pytest.approx(g.norm().item(), rel=1e-5)


def test_the_ramp_study_chooses_on_validation_and_states_paired_intervals(tmp_path):
    """Three tiny ramp grids: ramps.csv's choice is the ramp with the best mean last-epoch
    noisy-validation accuracy (recomputed from the run folders), and the chosen-minus-preset
    difference in ramps.md is scipy's paired t-interval. The fresh replicates (2 and 3) are
    runs of their own, never of the choice, and out_of_sample.csv's figures are their paired
    differences against the loss alone."""
    study = script("code/studies/study_ramps.py")
    assert study.main(["--epochs", "1", "--subset", "128", "--replicates", "2", "--fresh", "2",
                       "--fresh-first", "2", "--runs", str(tmp_path / "runs"),
                       "--out", str(tmp_path / "out")]) == 0
    fresh = discover_runs(tmp_path / "runs" / "fresh-threshold-50")
    assert {r.replicate for r in fresh} == {2, 3} and len(fresh) == 12
    out = [r for r in read(tmp_path / "out" / "out_of_sample.csv")
           if r["loss"] == "cross-entropy" and r["measure"] == "final"]
    test = {(r.baseline, r.use_al2, r.replicate): r.metric("test_acc", 1) for r in fresh}
    d = [test[("bare", True, k)] - test[("bare", False, k)] for k in (2, 3)]
    assert float(out[0]["mean_diff"]) == pytest.approx(sum(d) / 2) and out[0]["n"] == "2"
    rows = read(tmp_path / "out" / "ramps.csv")
    grids = {t: discover_runs(tmp_path / "runs" / f"threshold-{t:g}") for t in study.THRESHOLDS}
    for baseline, loss in study.FITS.items():
        def last(t, column, use_al2=True):
            runs = sorted((r for r in grids[t] if r.baseline == baseline and
                           r.use_al2 == use_al2), key=lambda r: r.replicate)
            return [r.metric(column, r.epochs) for r in runs]
        val = {t: sum(last(t, "val_acc")) / 2 for t in grids}
        chosen = max(val, key=val.get)
        assert [float(r["threshold"]) for r in rows if r["loss"] == loss and
                r["chosen"] == "True"] == [chosen]
        d = [b - a for a, b in zip(last(50.0, "test_acc"), last(chosen, "test_acc"))]
        mean = sum(d) / 2
        if len(set(d)) > 1:
            low, high = stats.t.interval(0.95, 1, loc=mean, scale=stats.sem(d))
            line = next(x for x in (tmp_path / "out" / "ramps.md").read_text().splitlines()
                        if x.startswith(f"| {loss} |"))
            assert f"[{low:+.2f}, {high:+.2f}]" in line
        assert math.isfinite(mean)


def test_the_claims_figures_recomputed_from_the_committed_per_run_rows(tmp_path):
    """code/studies/claims.py on the committed results: figures of three kinds recomputed here
    with scipy from the per-run rows (a paired t-interval from selection.csv, the ablation's
    share of above-chance accuracy kept from ablation.csv, a paired L_r ratio from runs.csv);
    the README's claims table is exactly what it writes (--check); a results folder without the
    rows is one line and exit 2, nothing written."""
    readme = tmp_path / "README.md"
    readme.write_text((REPO_ROOT / "README.md").read_text())
    result = main("claims", "--out", str(tmp_path), "--readme", str(readme))
    assert result.returncode == 0, result.stderr
    assert readme.read_text() == (REPO_ROOT / "README.md").read_text(), \
        "the README's claims table differs from what code/studies/claims.py writes: run it"
    assert main("claims", "--check").returncode == 0
    rows = {r["measure"]: r for r in read(tmp_path / "claims.csv")}
    results = REPO_ROOT / "results" / "replicates-quick"

    def interval(d):
        return stats.t.interval(0.95, len(d) - 1, loc=sum(d) / len(d), scale=stats.sem(d))
    sel = read(results / "selection.csv")
    final = {(r["baseline"], r["al2"], int(r["replicate"])): float(r["final_test_acc"])
             for r in sel}
    d = [final[("bare", "True", k)] - final[("bn", "False", k)] for k in range(5)]
    got = rows["final test acc., Bare + AL2 - BN"]
    assert (float(got["mean"]), float(got["low"]), float(got["high"])) == \
        pytest.approx((sum(d) / 5, *interval(d)))
    assert int(got["ahead"]) == sum(x > 0 for x in d) and int(got["n"]) == 5
    abl = {(r["run"], r["fraction"]): float(r["acc_test"])
           for r in read(results / "ablation.csv") if r["mode"] == "element"}

    def kept(run):
        return (abl[(run, "0.5")] - 10) / (abl[(run, "0.0")] - 10)
    d = [kept(f"bare_al2_s0_r{k}") - kept(f"bare_plain_s0_r{k}") for k in range(5)]
    got = rows["element mode, 50% zeroed, share above chance: Bare + AL2 - Bare"]
    assert (float(got["mean"]), float(got["low"]), float(got["high"])) == \
        pytest.approx((sum(d) / 5, *interval(d)))
    lr = {(r["baseline"], r["al2"], int(r["replicate"])): float(r["train_Lr"])
          for r in read(results / "runs.csv") if r["epoch"] == "35"}
    logs = [math.log(lr[("bare", "False", k)] / lr[("do", "False", k)]) for k in range(5)]
    got = rows["L_r at epoch 35, Bare / DO (paired ratio)"]
    assert float(got["mean"]) == pytest.approx(math.exp(sum(logs) / 5))
    assert float(got["low"]) == pytest.approx(math.exp(interval(logs)[0]))
    empty = tmp_path / "empty"
    empty.mkdir()
    result = main("claims", "--results", str(empty), "--readme", str(readme))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "claims.py: error:" in result.stderr and not any(empty.iterdir())


def test_the_paper_scale_bound_is_rounded_up_so_within_is_true():
    """"within X points" is a bound: |gap| rounded up to a tenth, never down (1.52 -> 1.6), and
    claims.md's bounds cover every paper-scale gap of claims.csv: with AL2 every baseline's,
    without AL2 those of the baselines it names (a run at another weight decay is said apart)."""
    within = script("code/studies/claims_paper.py").within
    assert (within(1.52), within(-1.52), within(1.5), within(0.0)) == ("1.6", "1.6", "1.5", "0.0")
    gaps = [(r["measure"], abs(float(r["mean"])))
            for r in read(REPO_ROOT / "results" / "claims" / "claims.csv")
            if r["measure"].startswith("paper scale,")]
    bound = re.search(r"within ([0-9.]+) points of the paper's with AL2 and within ([0-9.]+) "
                      r"without \(([^)]*)\)",
                      (REPO_ROOT / "results" / "claims" / "claims.md").read_text())
    assert gaps and bound
    named = bound.group(3).split(", ")
    al2 = [g for m, g in gaps if "+ AL2" in m]
    plain = [g for m, g in gaps if "+ AL2" not in m and m.split()[2] in named]
    assert al2 and plain and len(al2) + len(plain) <= len(gaps)
    assert max(al2) <= float(bound.group(1)) and max(plain) <= float(bound.group(2))
