"""Independent replicates, the noisy validation set and what evaluate.py makes of them: a run's
numbers do not depend on the other runs of its grid, replicate 0 is today's grid, validation
images are held out, and every interval is the t-interval scipy gives."""
import math
import zlib

import pytest
import torch
from scipy import stats

import al2
import al2.training.plan
from al2.training.config import GridConfig
from al2.training.data import load_grid_data, normalize
from al2.analyses.replicates import paired_rows, selection, t_interval
from al2.analyses.runs import discover_runs
from al2.training.rng import ORDER_STREAM, epoch_generator
from al2.training.stack import Trainer
from conftest import evaluate, read
from test_training import TINY

REPLICATED = dict(baselines=["bare", "do"], al2="both", epochs=1, lr=0.05, map_start=0.5,
                  replicates=3, **{**TINY, "subset": 128})


def trained(grid, runs, epochs=1):
    """The runs trained together in float64 for `epochs`: {name: state dict}, and the sums."""
    data = load_grid_data(grid, torch.device("cpu"),
                          label_seeds=al2.training.plan.label_seeds(runs))
    data.train_x = data.train_x.double()
    trainer = Trainer(grid, runs, data)
    for i in range(epochs):
        sums = trainer.train_epoch(i, torch.tensor([0.5 if r.use_al2 else 0.0 for r in runs]))
    return {r.name: trainer.model.run_state_dict(i) for i, r in enumerate(runs)}, sums


def test_a_run_alone_equals_the_same_run_inside_a_3_replicate_grid(float64):
    """Each replicate reads its own batch order and draws its own masks and initialisation, so
    a run trained alone ends where it ends among 12 runs of 3 replicates (float64), also the
    dropout run of replicate 2; and replicates really differ."""
    grid = GridConfig(**REPLICATED)
    together, _ = trained(grid, grid.runs())
    assert len(together) == 12
    for name in ("do_al2_s0_r2", "bare_plain_s0_r1"):
        run = next(r for r in grid.runs() if r.name == name)
        alone, _ = trained(grid, [run])
        for k, v in alone[name].items():
            assert torch.allclose(v, together[name][k], atol=1e-12, rtol=0), (name, k)
    for a, b in (("bare_plain_s0_r0", "bare_plain_s0_r1"), ("do_al2_s0_r1", "do_al2_s0_r2")):
        assert not torch.allclose(together[a]["head.2.weight"], together[b]["head.2.weight"])


def test_replicates_differ_in_initialisation_order_masks_and_optionally_labels():
    grid = GridConfig(**REPLICATED)
    runs = {r.name: r for r in grid.runs()}
    r0, r1 = runs["do_plain_s0_r0"], runs["do_plain_s0_r1"]
    assert r0.init_seed != r1.init_seed and r0.key != r1.key
    assert r0.replicate_key != r1.replicate_key
    cpu = torch.device("cpu")
    for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        # the CPU's generator reads 32 bits of a seed: the replicate key sits in those
        orders = [torch.randperm(128, generator=epoch_generator(
            0, 0, ORDER_STREAM, torch.device(dev), replicate_key=r.replicate_key), device=dev)
            for r in (r0, r1)]
        assert not torch.equal(*orders)
        masks = [torch.rand(64, generator=gen, device=dev) for gen in
                 al2.training.rng.dropout_generators([r0, r1], 0, 0, torch.device(dev))]
        assert not torch.equal(*masks)
    # the seeds the CPU reads (their low 32 bits) never repeat: 700 epochs x 10 replicates x
    # the order and the dropout stream (config.replicate_key, trainer.epoch_generator)
    low = {((e * 2 + stream) ^ al2.training.config.replicate_key(k)) & 0xFFFFFFFF
           for e in range(700) for k in range(10) for stream in (0, 1)}
    assert len(low) == 700 * 10 * 2
    # within a replicate the pair shares everything but AL2
    twin = runs["do_al2_s0_r1"]
    assert (twin.init_seed, twin.replicate_key, twin.corruption_seed) == \
        (r1.init_seed, r1.replicate_key, r1.corruption_seed)
    assert r0.corruption_seed == r1.corruption_seed == grid.corruption_seed
    own = GridConfig(**{**REPLICATED, "corruption_per_replicate": True}).runs()
    assert len({r.corruption_seed for r in own}) == 3
    data = load_grid_data(grid, cpu, label_seeds=al2.training.plan.label_seeds(own))
    assert data.train_noisy.shape == (3, 128) and not torch.equal(data.noisy_full[0],
                                                                   data.noisy_full[1])


def test_a_grid_of_one_replicate_is_todays_grid(float64):
    """One replicate: today's names, seeds, streams and order (written out here: the name, its
    CRC-32 as the dropout key, the seed as initialisation, key 0 for the batch order); replicate
    0 of a 3-replicate grid is the same run and trains to the same weights."""
    one = GridConfig(**{**REPLICATED, "replicates": 1})
    assert [r.name for r in one.runs()] == ["bare_plain_s0", "bare_al2_s0", "do_plain_s0",
                                            "do_al2_s0"]
    for r in one.runs():
        assert (r.key, r.init_seed, r.replicate_key) == (zlib.crc32(r.name.encode()), r.seed, 0)
    three = GridConfig(**REPLICATED)
    first = [r for r in three.runs() if r.replicate == 0]
    assert [r.name for r in first] == [f"{r.name}_r0" for r in one.runs()]
    assert [(r.key, r.init_seed, r.replicate_key) for r in first] == \
        [(r.key, r.init_seed, r.replicate_key) for r in one.runs()]
    alone, _ = trained(one, one.runs())
    inside, _ = trained(three, first)
    for r in one.runs():
        for k, v in alone[r.name].items():
            assert torch.allclose(v, inside[f"{r.name}_r0"][k], atol=1e-12, rtol=0)


def test_the_t_interval_is_scipys():
    """t_interval on fixed numbers against a hand computation with scipy.stats.t and against
    scipy's own paired t-test interval."""
    plain = [21.1, 25.8, 43.55, 24.05, 22.95]
    al2_ = [55.35, 61.5, 66.4, 64.85, 58.0]
    d = [b - a for a, b in zip(plain, al2_)]
    n, mean = len(d), sum(d) / len(d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    got = t_interval(d)
    assert got["n"] == 5 and got["positive"] == 5
    assert got["mean"] == pytest.approx(mean) and got["sd"] == pytest.approx(sd)
    assert (got["low"], got["high"]) == (pytest.approx(mean - half), pytest.approx(mean + half))
    ci = stats.ttest_rel(al2_, plain).confidence_interval(0.95)
    assert (got["low"], got["high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert t_interval([1.0, -2.0, math.nan])["n"] == 2
    assert math.isnan(t_interval([3.0])["low"]) and t_interval([3.0])["positive"] == 1


def test_validation_images_are_held_out_with_their_noisy_labels_and_never_trained_on(tmp_path):
    """The N images after the training subset, their labels the grid's corrupted ones; training
    with or without them gives the same weights bit for bit, and metrics.csv's val_acc is the
    checkpoint's accuracy on them against the noisy labels."""
    grid = GridConfig(baselines=["bare", "do"], al2="on", epochs=2, lr=0.05, validation=64,
                      **TINY)
    assert grid.validation_range() == range(256, 320)
    assert GridConfig(validation=1000).train_images() == 59000   # the paper preset's cost
    data = load_grid_data(grid, torch.device("cpu"))
    train_x, train_y = al2.load_mnist()[:2]
    noisy, _ = al2.corrupt_labels(train_y, 75, grid.corruption_seed)
    assert torch.equal(data.val_x, normalize(train_x[256:320]))
    assert torch.equal(data.val_noisy[0], noisy[256:320]) and len(data.train_x) == 256
    assert (data.val_noisy[0] != train_y[256:320]).float().mean() > 0.5   # corrupted labels
    al2.train_grid(grid, tmp_path / "val", device="cpu", progress=False)
    al2.train_grid(GridConfig(**{**vars(grid), "validation": 0}), tmp_path / "none",
                   device="cpu", progress=False)
    for run in grid.runs():
        with_val = read(tmp_path / "val" / run.name / "metrics.csv")
        without = read(tmp_path / "none" / run.name / "metrics.csv")
        for a, b in zip(with_val, without):
            assert all(a[k] == b[k] for k in a if not k.startswith("val_") and k != "wall_time_s")
            assert b["val_acc"] == "nan" and a["val_acc"] != "nan"
        wa = torch.load(tmp_path / "val" / run.name / "checkpoints" / "epoch_2.pt")["model"]
        wb = torch.load(tmp_path / "none" / run.name / "checkpoints" / "epoch_2.pt")["model"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
        model, _ = al2.load_checkpoint(tmp_path / "val" / run.name / "checkpoints" /
                                       "epoch_2.pt")
        with torch.no_grad():
            acc = 100.0 * (model(data.val_x)[0].argmax(1) == data.val_noisy[0]).double().mean()
        assert float(with_val[2]["val_acc"]) == pytest.approx(acc.item(), abs=1e-4)


@pytest.fixture(scope="module")
def replicated_grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("replicated") / "runs"
    al2.train_grid(GridConfig(baselines=["bare", "wd"], al2="both", epochs=3, lr=0.05,
                              replicates=3, validation=100, checkpoint_every=1,
                              **{**TINY, "activation_images": 40}),
                   out, device="cpu", progress=False)
    return out


def test_early_stopping_and_the_oracle_by_hand(replicated_grid):
    """selection(): the test accuracy at the first epoch of best noisy-validation accuracy, and
    the best test accuracy (the oracle), read off metrics.csv by hand."""
    for run in discover_runs(replicated_grid):
        rows = run.metrics[1:]
        best_val = max(r["val_acc"] for r in rows)
        kept = next(r for r in rows if r["val_acc"] == best_val)
        got = selection(run)
        assert got["val_epoch"] == kept["epoch"]
        assert got["early_stopped_test_acc"] == kept["test_acc"]
        assert got["oracle_test_acc"] == max(r["test_acc"] for r in rows)
        assert got["final_test_acc"] == rows[-1]["test_acc"]
        assert selection(run, 1)["early_stopped_test_acc"] == rows[0]["test_acc"]


def test_evaluate_states_every_comparison_over_replicates(replicated_grid, tmp_path):
    """Table 1's cells over the 3 replicates (mean ± sd (3)); paired.csv's AL2 - plain per
    baseline and epoch equal to the hand-paired metrics with scipy's interval; every instance
    pair of a type in similarity.csv (3 runs: 3 pairs), summarised; ablation over replicates."""
    done = evaluate("--runs", str(replicated_grid), "--out", str(tmp_path), "--ablation-images",
                    "50", "--ablation-draws", "1", "--no-probe")
    assert done.returncode == 0, done.stderr
    table = read(tmp_path / "table1.csv")
    assert {r["seeds"] for r in table} == {"3"}
    assert "± " in (tmp_path / "table1.md").read_text() and "(3)" in \
        (tmp_path / "table1.md").read_text()
    runs = {r.name: r for r in discover_runs(replicated_grid)}
    paired = read(tmp_path / "paired.csv")
    assert {(r["baseline"], r["measure"]) for r in paired} == \
        {(b, m) for b in ("bare", "wd") for m in ("final", "early_stopped")}
    row = next(r for r in paired if r["baseline"] == "wd" and r["measure"] == "final"
               and r["epoch"] == "3")
    d = [runs[f"wd_al2_s0_r{k}"].metric("test_acc", 3) - runs[f"wd_plain_s0_r{k}"].metric(
        "test_acc", 3) for k in range(3)]
    ci = stats.t.interval(0.95, 2, loc=sum(d) / 3, scale=stats.sem(d))
    assert float(row["n"]) == 3 and float(row["mean_diff"]) == pytest.approx(sum(d) / 3)
    assert (float(row["ci_low"]), float(row["ci_high"])) == (pytest.approx(ci[0]),
                                                             pytest.approx(ci[1]))
    assert int(row["al2_ahead"]) == sum(x > 0 for x in d)
    assert paired_rows(list(runs.values()), [3], early=False)[0]["n"] == 3
    sim = read(tmp_path / "similarity.csv")
    pairs = {(r["run_a"], r["run_b"]) for r in sim if r["pair"] == "seeds_plain"}
    assert ("bare_plain_s0_r0", "bare_plain_s0_r2") in pairs and len(pairs) == 6   # 3 x 2
    summary = read(tmp_path / "similarity_summary.csv")
    cell = next(r for r in summary if r["baseline"] == "bare" and r["pair"] == "seeds_al2"
                and r["statistic"] == "cka" and r["epoch"] == "3")
    values = [float(r["value"]) for r in sim if r["pair"] == "seeds_al2" and r["epoch"] == "3"
              and r["statistic"] == "cka" and r["run_a"].startswith("bare")]
    assert int(cell["pairs"]) == 3 and float(cell["sd"]) == pytest.approx(stats.tstd(values))
    assert "instances with AL2" in (tmp_path / "similarity_summary.md").read_text()
    selected = read(tmp_path / "selection.csv")
    assert len(selected) == 12 and "oracle" in (tmp_path / "selection.md").read_text()
