"""evaluate.py on a tiny trained grid: files, columns, the two ablation checks, bad input."""
import json
import shutil

import pytest
import torch

import al2
import al2.analyses.ablation
import al2.analyses.evaluation
import al2.analyses.probe
import al2.training.inference
import al2.analyses.similarity
import al2.analyses.report
import al2.analyses.runs
from al2.analyses.ablation import ablation_fractions, stacked_ablation
from al2.training.data import normalize
from al2.training.model import StackedLeNet
from conftest import evaluate, evaluate_subprocess, read

GRID = dict(baselines=["bare", "wd"], al2="both", seeds=[0, 1], epochs=3, lr=0.05,
            subset=256, test_subset=200, activation_images=40, checkpoint_every=1)


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid") / "runs"
    al2.train_grid(al2.GridConfig(**GRID), out, device="cpu", progress=False)
    return out


def test_all_outputs_with_their_columns(grid_dir, tmp_path):
    done = evaluate_subprocess("--runs", str(grid_dir), "--out", str(tmp_path),
                               "--ablation-images", "100", "--ablation-draws", "2")
    assert done.returncode == 0, done.stderr
    for name in ("table1.csv", "table1.md", "table1.png", "curves.png", "similarity.csv",
                 "similarity.png", "ablation.csv", "ablation.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    # seeds 0 and 1 share batch order and labels: no replicates, so no replicate statistics
    assert not {p.name for p in tmp_path.iterdir()} & {
        "paired.csv", "paired.md", "selection.csv", "selection.md", "similarity_summary.csv",
        "similarity_summary.md"}
    assert "paired" not in done.stdout and "selection" not in done.stdout
    table = read(tmp_path / "table1.csv")
    assert list(table[0]) == al2.analyses.report.TABLE_COLUMNS
    # 2 baselines x 3 metrics x without/with x 3 epoch columns (1, 2, 3 for a 3-epoch run)
    assert len(table) == 2 * 3 * 2 * 3
    assert {r["seeds"] for r in table} == {"2"}
    ta = [r for r in table if r["baseline"] == "bare" and r["metric"] == "TA" and
          r["al2"] == "without" and r["epoch"] == "3"][0]
    runs = {r.name: r for r in al2.analyses.runs.discover_runs(grid_dir)}
    mean = (runs["bare_plain_s0"].metric("test_acc", 3) +
            runs["bare_plain_s1"].metric("test_acc", 3)) / 2
    assert float(ta["ours"]) == pytest.approx(mean)
    assert "**" in (tmp_path / "table1.md").read_text()
    sim = read(tmp_path / "similarity.csv")
    assert list(sim[0]) == al2.analyses.similarity.SIMILARITY_COLUMNS
    kinds = {r["pair"] for r in sim}
    assert kinds == {"seeds_plain", "seeds_al2", "plain_vs_al2", "random_plain", "random_al2"}
    assert {r["statistic"] for r in sim} == set(al2.analyses.similarity.SIMILARITY_STATISTICS)
    assert {int(r["epoch"]) for r in sim} == {0, 1, 2, 3}
    assert {r["datapoints"] for r in sim} == {str(40 * 16)}
    # same initialisation at epoch 0: plain and AL2 runs of one seed are identical
    same = [r for r in sim if r["pair"] == "plain_vs_al2" and r["epoch"] == "0"]
    assert all(float(r["value"]) == pytest.approx(1.0, abs=1e-6) for r in same)
    floor = [float(r["value"]) for r in sim
             if r["pair"].startswith("random") and r["statistic"] == "cka"]
    assert max(floor) < 0.2
    # seed pairs (Fig. 1): each baseline's two instances, without and with AL2, every epoch
    seeds = {(r["pair"], r["run_a"], r["run_b"]) for r in sim if r["pair"].startswith("seeds")}
    assert seeds == {("seeds_plain", f"{b}_plain_s0", f"{b}_plain_s1") for b in ("bare", "wd")} | \
        {("seeds_al2", f"{b}_al2_s0", f"{b}_al2_s1") for b in ("bare", "wd")}
    abl = read(tmp_path / "ablation.csv")
    assert list(abl[0]) == al2.analyses.ablation.ABLATION_COLUMNS
    assert {r["mode"] for r in abl} == {"element", "unit"}
    assert len(abl) == 8 * 2 * 11


def test_ablation_checks_fraction_0_and_100(grid_dir):
    """Fraction 0 reproduces the unablated accuracy exactly; fraction 1 gives the head's output
    on zeros for every sample."""
    model, _ = al2.load_checkpoint(grid_dir / "wd_al2_s1" / "checkpoints" / "epoch_3.pt")
    _, _, test_x, test_y = al2.load_mnist()
    x, y = normalize(test_x[:300]), test_y[:300]
    stacked = StackedLeNet([model]).eval()
    feats = al2.training.inference.trunk_features(stacked, x)[0]
    with torch.no_grad():
        plain = 100.0 * (model(x)[0].argmax(1) == y).double().mean().item()
        zero_class = model.head(torch.zeros(1, 800)).argmax(1).item()
    for mode in ("element", "unit"):
        acc = stacked_ablation(stacked, feats[None], {"t": y}, mode, ablation_fractions(), 3,
                               seed=0)["t"][0]
        assert acc[0] == pytest.approx(plain, abs=1e-9)
        assert acc[-1] == pytest.approx(100.0 * (y == zero_class).double().mean().item(), abs=1e-9)
        assert acc[0] >= acc[5] - 10  # a coarse sanity check: ablation does not help much


def test_missing_and_empty_runs_folders(tmp_path):
    done = evaluate("--runs", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "does not exist" in done.stderr
    (tmp_path / "empty").mkdir()
    done = evaluate("--runs", str(tmp_path / "empty"), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "holds no trained runs" in done.stderr
    assert "Traceback" not in done.stderr


def test_mixed_grids_are_refused(grid_dir, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(grid_dir, mixed)
    other = tmp_path / "other"
    al2.train_grid(al2.GridConfig(**{**GRID, "baselines": ["bare"], "al2": "on", "seeds": [5],
                                     "epochs": 1}), other, device="cpu", progress=False)
    shutil.copytree(other / "bare_al2_s5", mixed / "bare_al2_s5")
    done = evaluate("--runs", str(mixed), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "different grids" in done.stderr


def test_missing_and_damaged_checkpoints_still_write_the_rest(grid_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(grid_dir, broken)
    (broken / "bare_al2_s0" / "checkpoints" / "epoch_3.pt").unlink()
    (broken / "wd_plain_s1" / "checkpoints" / "epoch_3.pt").write_bytes(b"not a checkpoint")
    (broken / "wd_al2_s0" / "activations" / "epoch_2.pt").write_bytes(b"garbage")
    out = tmp_path / "o"
    done = evaluate("--runs", str(broken), "--out", str(out), "--ablation-images", "50",
                    "--ablation-draws", "1")
    assert done.returncode == 2
    assert "bare_al2_s0/checkpoints/epoch_3.pt is missing" in done.stderr
    assert "wd_plain_s1/checkpoints/epoch_3.pt" in done.stderr and "damaged" in done.stderr
    assert "wd_al2_s0/activations/epoch_2.pt" in done.stderr
    assert "Traceback" not in done.stderr
    for name in ("table1.csv", "table1.png", "curves.png", "similarity.csv", "ablation.csv"):
        assert (out / name).exists(), name
    missing = (out / "MISSING.md").read_text()
    assert "bare_al2_s0" in missing and "wd_plain_s1" in missing
    ablated = {r["run"] for r in read(out / "ablation.csv")}
    assert "bare_al2_s0" not in ablated and "bare_plain_s0" in ablated


def test_extra_instances_feed_similarity_not_table1(tmp_path):
    """A grid with Table 1 seed 0 and a second Bare instance (seed 1): every Table 1 cell
    averages seed 0 alone; similarity.csv holds Bare's seed pairs without and with AL2."""
    runs_dir = tmp_path / "runs"
    al2.train_grid(al2.GridConfig(**{**GRID, "seeds": [0], "extra_seeds": {"bare": [1]},
                                     "epochs": 2}), runs_dir, device="cpu", progress=False)
    done = evaluate("--runs", str(runs_dir), "--out", str(tmp_path / "o"), "--no-ablation",
                    "--no-probe")
    assert done.returncode == 0, done.stderr
    table = read(tmp_path / "o" / "table1.csv")
    assert {r["seeds"] for r in table} == {"1"}
    runs = {r.name: r for r in al2.analyses.runs.discover_runs(runs_dir)}
    cell = [r for r in table if r["baseline"] == "bare" and r["metric"] == "TA"
            and r["al2"] == "without" and r["epoch"] == "2"][0]
    assert float(cell["ours"]) == pytest.approx(runs["bare_plain_s0"].metric("test_acc", 2))
    sim = read(tmp_path / "o" / "similarity.csv")
    pairs = {(r["pair"], r["run_a"], r["run_b"]) for r in sim}
    assert ("seeds_plain", "bare_plain_s0", "bare_plain_s1") in pairs
    assert ("seeds_al2", "bare_al2_s0", "bare_al2_s1") in pairs
    assert not any(r["pair"].startswith("seeds") and r["run_a"].startswith("wd") for r in sim)


def test_recomputed_representations_equal_the_saved_ones(grid_dir):
    """The authors' 160,000-point path recomputes trunk outputs from checkpoints, all runs
    stacked; on the images that were saved it gives the saved (float16) activations, in the
    authors' layout: (N, 50, 4, 4) -> (N, 4, 4, 50) -> (16 N, 50), transposed."""
    runs = al2.analyses.runs.discover_runs(grid_dir)
    x = normalize(al2.load_mnist()[2][:40])
    ev = al2.analyses.evaluation.Evaluation(runs, grid_dir, grid_dir.parent / "eval")
    recomputed = al2.analyses.similarity.recomputed_representations(ev, 2, x)
    assert not ev.problems and set(recomputed) == {r.name for r in runs}
    for r in runs:
        saved = al2.analyses.similarity.saved_representation(r, 2, None)
        assert saved.shape == recomputed[r.name].shape == (50, 40 * 16)
        assert torch.allclose(saved, recomputed[r.name], atol=1e-2, rtol=1e-2)
        feats = torch.load(r.activations(2)).float()
        authors = feats.view(40, 50, 4, 4).permute(0, 2, 3, 1).reshape(-1, 50).T
        assert torch.equal(saved, authors)


def write_fake_run(folder, baseline, use_al2, metric, trained=700):
    """A run folder by hand: config.json (a 700-epoch grid) and metrics.csv from
    metric(epoch, column) for epochs 0..trained."""
    run = folder / f"{baseline}_{'al2' if use_al2 else 'plain'}_s0"
    run.mkdir(parents=True)
    grid = {"preset": "paper", "baselines": ["bare"], "al2": "both", "seeds": [0],
            "epochs": 700, "subset": None, "test_subset": None, "percent_corrupt": 75.0}
    (run / "config.json").write_text(json.dumps({"baseline": baseline, "al2": use_al2, "seed": 0,
                                                 "grid": grid}))
    columns = ["epoch", "test_acc", "train_Lc", "train_Lr"]
    with open(run / "metrics.csv", "w") as f:
        f.write(",".join(columns) + "\n")
        for e in range(trained + 1):
            f.write(",".join(str(metric(e, c)) for c in columns) + "\n")


def test_table1_cells_from_hand_made_metrics(tmp_path):
    """table1.csv reads epochs 100..700, prints with-AL2 L_r x100, sets the paper's value beside
    ours with their difference, and flags cells outside the tolerance."""
    def metric(e, column):
        return {"epoch": e, "test_acc": 20.0 + e / 100, "train_Lc": 2.0,
                "train_Lr": 0.0001 * e}[column]
    runs_dir = tmp_path / "runs"
    write_fake_run(runs_dir, "bare", False, metric)
    write_fake_run(runs_dir, "bare", True, metric)
    done = evaluate("--runs", str(runs_dir), "--out", str(tmp_path / "o"), "--no-similarity",
                    "--no-ablation", "--no-curves")
    assert done.returncode == 0, done.stderr
    table = {(r["metric"], r["al2"], int(r["epoch"])): r
             for r in read(tmp_path / "o" / "table1.csv")}
    assert sorted({e for _, _, e in table}) == [100, 200, 300, 400, 500, 600, 700]
    ta = table[("TA", "without", 700)]          # ours 27.00, paper 25.84: inside 5 points
    assert (float(ta["ours"]), float(ta["paper"])) == (27.0, 25.84)
    assert float(ta["diff"]) == pytest.approx(1.16) and ta["outside_tolerance"] == "False"
    ta = table[("TA", "with", 100)]             # ours 21.00, paper 95.25
    assert float(ta["diff"]) == pytest.approx(21.0 - 95.25) and ta["outside_tolerance"] == "True"
    lr = table[("Lr", "with", 300)]             # 0.03 raw, printed x100 = 3.0; paper 0.06
    assert float(lr["scale"]) == 100.0 and float(lr["ours"]) == pytest.approx(3.0)
    assert float(lr["paper"]) == 0.06 and lr["outside_tolerance"] == "True"
    lr = table[("Lr", "without", 300)]          # 0.03 raw, no scale; paper 26.12
    assert float(lr["scale"]) == 1.0 and float(lr["ours"]) == pytest.approx(0.03)
    lc = table[("Lc", "with", 600)]             # 2.00 vs the paper's 2.07: inside 0.10
    assert lc["outside_tolerance"] == "False" and float(lc["diff"]) == pytest.approx(-0.07)
    lc = table[("Lc", "without", 100)]          # 2.00 vs 2.15: just outside 0.10
    assert lc["outside_tolerance"] == "True" and float(lc["diff"]) == pytest.approx(-0.15)
    assert "**21.00 (95.25)†**" in (tmp_path / "o" / "table1.md").read_text()


def test_table1_of_a_grid_still_in_training_marks_the_columns_not_reached(tmp_path):
    """A 700-epoch grid trained to epoch 250: Table 1 keeps all seven columns; 100 and 200 hold
    ours, 300..700 say "not reached" beside the paper's value (never left out silently)."""
    def metric(e, column):
        return {"epoch": e, "test_acc": 30.0, "train_Lc": 2.0, "train_Lr": 0.5}[column]
    runs_dir = tmp_path / "runs"
    write_fake_run(runs_dir, "bare", False, metric, trained=250)
    write_fake_run(runs_dir, "bare", True, metric, trained=250)
    done = evaluate("--runs", str(runs_dir), "--out", str(tmp_path / "o"), "--no-similarity",
                    "--no-ablation", "--no-curves", "--no-probe")
    assert done.returncode == 0, done.stderr
    table = read(tmp_path / "o" / "table1.csv")
    assert sorted({int(r["epoch"]) for r in table}) == [100, 200, 300, 400, 500, 600, 700]
    for r in table:
        reached = int(r["epoch"]) <= 250
        assert (r["seeds"] == "1") == reached and (r["ours"] == "nan") != reached
        assert float(r["paper"]) >= 0 and (r["outside_tolerance"] == "False" or reached)
    md = (tmp_path / "o" / "table1.md").read_text()
    assert "Epochs 300, 400, 500, 600, 700: not reached yet" in md
    assert "not reached (25.84)" in md and "30.00 (" in md       # Bare TA at 700: the paper's


def test_spatial_points_use_the_authors_layout():
    """Each value encodes (image, channel, row, column); the authors' evaluate.py takes
    view(N, 50, 4, 4).permute(0, 2, 3, 1).view(-1, 50) and transposes: neuron c, datapoint
    16 image + 4 row + column."""
    n = 3
    i, c, h, w = torch.meshgrid(torch.arange(n), torch.arange(50), torch.arange(4),
                                torch.arange(4), indexing="ij")
    features = (i * 1000 + c * 10 + h * 4 + w).float().reshape(n, 800)   # (C, H, W) order
    points = al2.analyses.similarity.spatial_points(features)
    assert points.shape == (50, 16 * n)
    for image, channel, row, col in [(0, 0, 0, 0), (2, 49, 3, 3), (1, 7, 2, 1), (2, 13, 0, 3)]:
        assert points[channel, 16 * image + 4 * row + col] == image * 1000 + channel * 10 + \
            row * 4 + col


def test_stacked_ablation_equals_each_run_alone(grid_dir):
    """All runs' heads in one stacked pass give what each run gives ablated alone with the
    same masks (one mask draw covers all images in both cases)."""
    names = ["bare_plain_s0", "bare_al2_s1", "wd_plain_s1"]
    models = [al2.load_checkpoint(grid_dir / n / "checkpoints" / "epoch_3.pt")[0] for n in names]
    _, _, test_x, test_y = al2.load_mnist()
    x, y = normalize(test_x[:50]), test_y[:50]
    stacked = StackedLeNet(models).eval()
    feats = al2.training.inference.trunk_features(stacked, x)                       # (3, 50, 800)
    for mode in ("element", "unit"):
        together = stacked_ablation(stacked, feats, {"t": y}, mode, ablation_fractions(), 2,
                                    seed=3)["t"]
        for j, m in enumerate(models):
            alone = stacked_ablation(StackedLeNet([m]).eval(), feats[j:j + 1], {"t": y}, mode,
                                     ablation_fractions(), 2, seed=3)["t"][0]
            assert together[j] == pytest.approx(alone, abs=1e-9), (mode, names[j])
        assert len({tuple(t) for t in together}) > 1  # the runs differ: not vacuous


def test_noise_sweep_levels_names_labels_and_noise_csv(tmp_path):
    """--percent-corrupt 25,75: one stack per level, run names and configs say the level, each
    level's runs train on that level's corruption (the 25% runs equal a 25%-only grid bit for
    bit), Table 1 shows the 75% runs, noise.csv / noise.png hold every level."""
    base = {**GRID, "baselines": ["bare"], "epochs": 2}
    sweep, single = tmp_path / "sweep", tmp_path / "single"
    al2.train_grid(al2.GridConfig(**base, percent_corrupt=[25.0, 75.0]), sweep, device="cpu",
                   progress=False)
    al2.train_grid(al2.GridConfig(**base, percent_corrupt=25.0), single, device="cpu",
                   progress=False)
    runs = {r.name: r for r in al2.analyses.runs.discover_runs(sweep)}
    assert sorted(runs) == sorted(f"bare_{a}_s{s}_n{n}" for a in ("plain", "al2") for s in (0, 1)
                                  for n in (25, 75))
    assert {r.level for r in runs.values()} == {25.0, 75.0}
    for level in (25, 75):
        saved = torch.load(sweep / f"corruption-n{level}.pt")
        expected, _ = al2.corrupt_labels(al2.load_mnist()[1], level, 0)
        assert torch.equal(saved["noisy_labels"], expected)
    for name in ("bare_plain_s0", "bare_al2_s1"):
        a = read(sweep / f"{name}_n25" / "metrics.csv")
        b = read(single / name / "metrics.csv")
        for ra, rb in zip(a, b):
            ra.pop("wall_time_s"), rb.pop("wall_time_s")
            assert ra == rb
    out = tmp_path / "o"
    done = evaluate("--runs", str(sweep), "--out", str(out), "--ablation-images", "50",
                    "--ablation-draws", "1", "--no-probe")
    assert done.returncode == 0, done.stderr
    noise = read(out / "noise.csv")
    assert {(r["al2"], float(r["level"])) for r in noise} == \
        {(a, n) for a in ("without", "with") for n in (25.0, 75.0)}
    assert {r["seeds"] for r in noise} == {"2"}
    cell = [r for r in noise if r["al2"] == "without" and float(r["level"]) == 25.0][0]
    mean = (runs["bare_plain_s0_n25"].metric("test_acc", 2) +
            runs["bare_plain_s1_n25"].metric("test_acc", 2)) / 2
    assert float(cell["test_acc"]) == pytest.approx(mean)
    assert (out / "noise.png").stat().st_size > 0
    assert "75% noise" in (out / "table1.md").read_text()
    sim = read(out / "similarity.csv")
    assert all(r["run_a"][-3:] == r["run_b"][-3:] for r in sim if r["run_b"] != "random")
    assert {r["run"][-3:] for r in read(out / "ablation.csv")} == {"n25", "n75"}


def test_the_linear_probe_of_a_tiny_grid(grid_dir, tmp_path):
    """evaluate.py --probe on a grid: a row per run and probed epoch (0 and Table 1's columns),
    accuracies of a fitted probe (above chance on the trusted set), plain and AL2 runs of one seed
    equal at epoch 0 (the same trunk), probe.md per baseline; --no-probe writes neither file."""
    done = evaluate("--runs", str(grid_dir), "--out", str(tmp_path / "a"), "--no-table",
                    "--no-curves", "--no-similarity", "--no-ablation", "--probe-images", "200")
    assert done.returncode == 0, done.stderr
    rows = read(tmp_path / "a" / "probe.csv")
    assert list(rows[0]) == al2.analyses.probe.PROBE_COLUMNS
    runs = {r.name for r in al2.analyses.runs.discover_runs(grid_dir)}
    epochs = {int(r["epoch"]) for r in rows}
    assert 0 in epochs and 3 in epochs
    assert {(r["run"], int(r["epoch"])) for r in rows} == {(n, e) for n in runs for e in epochs}
    assert {r["images"] for r in rows} == {"200"}
    assert all(10 < float(r["train_acc"]) <= 100 and 0 <= float(r["test_acc"]) <= 100
               for r in rows)
    first = {r["run"]: r["test_acc"] for r in rows if r["epoch"] == "0"}
    assert first["bare_plain_s0"] == first["bare_al2_s0"] and \
        first["wd_plain_s1"] == first["wd_al2_s1"]
    assert "| BARE |" in (tmp_path / "a" / "probe.md").read_text()
    done = evaluate("--runs", str(grid_dir), "--out", str(tmp_path / "b"), "--no-table",
                    "--no-curves", "--no-similarity", "--no-ablation", "--no-probe")
    assert not (tmp_path / "b" / "probe.csv").exists()


def test_the_probe_fit_is_the_regularised_optimum(mnist):
    """fit_probe on real MNIST pixels (500 training images): the gradient of its objective
    vanishes at the returned weights (the strictly convex problem's one optimum), and the probe
    reads the test digits far above chance; standardise leaves a constant feature at 0."""
    from al2.analyses.probe import PENALTY_C, accuracy, fit_probe, standardise
    train_images, train_labels, test_images, test_labels = mnist
    images, labels = train_images[:500], train_labels[:500]
    test, test_y = test_images[:500], test_labels[:500]
    x, t = standardise(images.reshape(500, -1).double(), test.reshape(500, -1).double())
    assert torch.all(x[:, 0] == 0)                      # a corner pixel: 0 in every image
    w, b = fit_probe(x, labels)
    w.requires_grad_(True), b.requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(x @ w + b, labels, reduction="sum") + \
        w.pow(2).sum() / (2 * PENALTY_C)
    gw, gb = torch.autograd.grad(loss, (w, b))
    assert gw.abs().max() < 1e-3 and gb.abs().max() < 1e-3      # 3 iterations: ~80
    assert accuracy(w.detach(), b.detach(), t, test_y) > 75


def test_probes_fitted_side_by_side_equal_each_fitted_alone(mnist):
    """The probe's fast path (FitPool: fits in worker processes, one torch thread each)
    returns, for every job, the very weights the plain loop returns (real MNIST pixels, four
    problems of different sizes), and leaves the caller's thread count as it was."""
    from al2.analyses.probe import FitPool, fit_probe, standardise
    images, labels = mnist[0], mnist[1]
    jobs = []
    for k, n in enumerate((300, 400, 300, 500)):
        x = images[k * 500:k * 500 + n].reshape(n, -1).double()
        jobs.append((standardise(x, x)[0], labels[k * 500:k * 500 + n]))
    threads = torch.get_num_threads()
    with FitPool(workers=1) as pool:
        alone = pool.map(fit_probe, jobs)
    with FitPool(workers=2) as pool:
        together = pool.map(fit_probe, jobs)
    assert torch.get_num_threads() == threads
    for (w1, b1), (w2, b2) in zip(alone, together):
        assert torch.equal(w1, w2) and torch.equal(b1, b2)
