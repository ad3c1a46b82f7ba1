"""The grid trainer: stacked runs equal plain runs; schedule; checkpoints; resume; bad input."""
import csv
import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import al2
import al2.analyses.evaluation
import al2.training.folder
import al2.training.plan
import al2.analyses.runs
from al2.training.config import GridConfig
from al2.training.data import load_grid_data
from al2.training.model import LeNet, StackedLeNet, lenet_from_seed
from al2.method.remedies import mixup_draws
from al2.speed.graph import StaticStep
from al2.speed.variants import TRUNKS, Variants, install_trunk
from al2.training.rng import DROPOUT_STREAM, ORDER_STREAM, epoch_generator
from al2.training.stack import Trainer
from al2.paths import REPO_ROOT
from conftest import main, script

TINY = dict(subset=256, test_subset=200, batch_size=64, activation_images=8)


def read_metrics(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_get_map_weights_matches_the_authors_rule():
    w = al2.get_map_weights(700)
    assert len(w) == 700 and w[0] == 0.01
    first = next(e for e, v in enumerate(w) if v >= 5)
    assert first == 66  # 0.01 * 1.1**66 = 5.4 is the first value >= 5 (zero-based epoch 66)
    # an independent closed form: 0.01 * 1.1**66 then * 1.01 per epoch
    assert w[66] == pytest.approx(0.01 * 1.1 ** 66, rel=1e-12)
    assert w[699] == pytest.approx(0.01 * 1.1 ** 66 * 1.01 ** (699 - 66), rel=1e-9)
    assert 2.8e3 < w[699] < 3.0e3
    assert al2.get_map_weights(0) == []


def test_lenet_shapes_and_feature_order():
    model = lenet_from_seed(0, batch_norm=True, dropout=0.5).eval()
    x = torch.randn(3, 1, 28, 28)
    log_probs, features = model(x)
    assert log_probs.shape == (3, 10) and features.shape == (3, 800)
    assert torch.allclose(log_probs.exp().sum(1), torch.ones(3))
    assert torch.equal(features, model.trunk(x).reshape(3, 50, 4, 4).flatten(1))  # (C, H, W)


def test_stacked_forward_equals_plain_models():
    """Pool-then-ReLU, the wide first conv and the grouped second conv change nothing."""
    models = [lenet_from_seed(s, bn) for s, bn in [(0, False), (1, True), (2, False)]]
    stacked = StackedLeNet(models).eval()
    x = torch.randn(5, 1, 28, 28)
    log_probs, features = stacked(x)
    for r, m in enumerate(models):
        lp, f = m.eval()(x)
        assert torch.allclose(log_probs[r], lp, atol=1e-5)
        assert torch.allclose(features[:, r], f, atol=1e-6)


def test_the_model_reads_each_run_from_one_plan():
    """The stacked model's per-run facts come from its ModelPlan, which a grid's StackPlan gives
    from the runs (batch norm, dropout rate, input group); models that disagree with the plan
    are refused rather than stacked into runs they are not."""
    grid = GridConfig(**{**EQUIV_GRID, "subset": 64, "replicates": 2})
    runs = grid.runs()
    plan = al2.training.plan.StackPlan(runs).model
    assert plan.batch_norm == tuple(r.batch_norm for r in runs)
    assert plan.dropout == tuple(r.dropout for r in runs)
    assert plan.group_of_run == tuple(r.replicate for r in runs)  # each replicate its batch
    models = [lenet_from_seed(r.init_seed, r.batch_norm, r.dropout) for r in runs]
    stacked = StackedLeNet(models, plan=plan)
    assert stacked.bn_runs == [i for i, r in enumerate(runs) if r.batch_norm]
    assert stacked.dropout_runs.tolist() == [i for i, r in enumerate(runs) if r.dropout > 0]
    assert len(stacked.group_slices) == 2
    with pytest.raises(ValueError, match="differ from the plan"):
        StackedLeNet(models[::-1], plan=plan)


# The paper's baseline -> regulariser table (Sec. 4), written here rather than read from the
# code's RunSpec, so that the equivalence tests below also check the wiring.
REGULARISERS = {"bare": dict(batch_norm=False, dropout=False, weight_decay=False),
                "bn": dict(batch_norm=True, dropout=False, weight_decay=False),
                "do": dict(batch_norm=False, dropout=True, weight_decay=False),
                "wd": dict(batch_norm=False, dropout=False, weight_decay=True)}


def hand_weights(grid, epochs):
    """w_e of the first epochs, by hand: start * fac1^e while below the threshold."""
    weights = [grid.map_start * grid.map_fac1 ** e for e in range(epochs)]
    assert all(w < grid.map_threshold for w in weights[:-1])
    return weights


def reference_fit(run, grid, log_probs, y, mixed=None):
    """The run's data term, per sample as each paper writes it, then the batch mean: cross-
    entropy, label smoothing, GCE, SCE; mixup: (lam, labels of the images mixed in)."""
    ce = -log_probs.gather(1, y[:, None]).squeeze(1)                        # (b,) -log p_y
    p_y = torch.exp(-ce)
    if run.baseline == "ls":   # (1 - eps) one-hot + eps / 10 as the target distribution
        eps = grid.label_smoothing
        per_sample = (1 - eps) * ce + eps * (-log_probs).sum(1) / 10
    elif run.baseline == "gce":
        per_sample = (1 - p_y ** grid.gce_q) / grid.gce_q
    elif run.baseline == "sce":  # RCE = -sum_k p_k log q_k, log 1 = 0, log 0 = A
        per_sample = grid.sce_alpha * ce + grid.sce_beta * (-grid.sce_log_clip) * (1 - p_y)
    elif run.baseline == "mixup":
        lam, y_b = mixed
        per_sample = lam * ce + (1 - lam) * -log_probs.gather(1, y_b[:, None]).squeeze(1)
    else:
        per_sample = ce
    return per_sample.mean()


def plain_reference(run, grid, data, epochs):
    """Run `run` alone: a plain LeNet, torch.optim.SGD, its replicate's minibatches, Eq. 1 (with
    its remedy's data term written out per sample) and for DO the run's own mask stream (one
    (b, 800) uniform draw per step); for mixup the replicate's lam and permutation of each
    step, the images mixed here."""
    reg = REGULARISERS.get(run.baseline, REGULARISERS["bare"])
    model = lenet_from_seed(run.init_seed, reg["batch_norm"], 0.0, grid.bn_init).train()
    opt = torch.optim.SGD(model.parameters(), lr=grid.lr, momentum=grid.momentum,
                          weight_decay=grid.weight_decay if reg["weight_decay"] else 0.0)
    weights = hand_weights(grid, epochs)
    labels = data.train_noisy[data.label_seeds.index(run.corruption_seed)]   # (N,)
    cpu = torch.device("cpu")
    lc_means = []
    for i in range(epochs):
        order = epoch_generator(grid.order_seed, i, ORDER_STREAM, cpu,
                                replicate_key=run.replicate_key)
        masks = epoch_generator(grid.dropout_seed, i, DROPOUT_STREAM, cpu, run.key,
                                run.replicate_key)
        perm = torch.randperm(len(data.train_x), generator=order)
        mix = mixup_draws(grid.mixup_alpha, grid.order_seed, i, [run.replicate_key],
                          len(data.train_x), grid.batch_size, dtype=data.train_x.dtype)
        lcs = []
        for step, s in enumerate(range(0, len(perm), grid.batch_size)):
            idx = perm[s:s + grid.batch_size]
            x, y, mixed = data.train_x[idx], labels[idx], None
            if run.baseline == "mixup":
                lam, pair = mix.lam[0, step], mix.perm[0, step, :len(idx)]
                x, mixed = lam * x + (1 - lam) * x[pair], (lam, y[pair])
            features = model.trunk(x).flatten(1)                              # (b, 800)
            if reg["dropout"]:  # inverted dropout, keep probability 1 - p
                u = torch.rand((len(idx), 800), generator=masks)
                keep = 1.0 - grid.dropout
                features = features * (u < keep) / keep
            log_probs = model.head(features)
            w = weights[i] if run.use_al2 else 0.0
            fit = reference_fit(run, grid, log_probs, y, mixed)
            loss = fit + w * (features ** 2).mean()                           # Eq. 1
            opt.zero_grad()
            loss.backward()
            opt.step()
            lcs.append(fit.item() if run.baseline == "mixup" else F.nll_loss(log_probs, y).item())
        lc_means.append(sum(lcs) / len(lcs))
    return model, lc_means


# AL2 weights 2.0 then 6.0 (start 2, fac1 3): distinct per epoch, large enough to matter.
EQUIV_GRID = dict(baselines=["bare", "bn", "do", "wd"], al2="both", seeds=[0, 1], epochs=2,
                  lr=0.05, map_start=2.0, map_fac1=3.0, weight_decay=5e-2, checkpoint_every=1,
                  **TINY)


def train_stacked_and_compare_in_float64(grid, trunk):
    """Train `grid` stacked in float64 and every run alone (plain_reference): the same weights
    to 1e-10 and the same per-epoch L_c."""
    runs, cpu = grid.runs(), torch.device("cpu")
    data = load_grid_data(grid, cpu, label_seeds=al2.training.plan.label_seeds(runs))
    data.train_x = data.train_x.double()
    trainer = Trainer(grid, runs, data)
    install_trunk(trainer, trunk)
    weights = hand_weights(grid, grid.epochs)
    lc_means = []
    for i in range(grid.epochs):
        sums = trainer.train_epoch(i, torch.tensor([weights[i] if r.use_al2 else 0.0
                                                    for r in runs]))
        lc_means.append([v / sums["batches"] for v in sums["loss_c"]])
    for r, run in enumerate(runs):
        ref, ref_lc = plain_reference(run, grid, data, grid.epochs)
        assert ref.trunk[0].weight.dtype == torch.float64
        got, ref_sd = trainer.model.run_state_dict(r), ref.state_dict()
        assert set(got) == set(ref_sd)
        for k, v in got.items():
            assert torch.allclose(v, ref_sd[k], atol=1e-10, rtol=0), (run.name, k)
        for i in range(grid.epochs):
            assert lc_means[i][r] == pytest.approx(ref_lc[i], rel=1e-10)
        # the weights moved: the comparison is not vacuous
        assert not torch.allclose(got["head.2.weight"],
                                  lenet_from_seed(run.init_seed).state_dict()["head.2.weight"])
    return trainer


@pytest.mark.parametrize("trunk", TRUNKS)
def test_stacked_engine_equals_runs_trained_alone_in_float64(float64, trunk):
    """The stacked trainer (StackedLeNet + Eq. 1 summed over runs + the flat per-run SGD) is
    the same computation as R plain LeNets with torch.optim.SGD on the same batches: all four
    baselines (BN, DO with the same masks, WD), with and without AL2, two seeds; with each way
    of computing the trunk. In float64 the two agree to rounding; in float32 a max-pool near-tie
    can route a gradient differently (both are right), which the float32 test below tolerates."""
    train_stacked_and_compare_in_float64(GridConfig(**{**EQUIV_GRID, "subset": 128}), trunk)


@pytest.mark.parametrize("trunk", ["grouped", "streams"])  # one conv1 per group; per run
def test_replicates_and_remedies_stacked_equal_runs_trained_alone_in_float64(float64, trunk):
    """Two replicates (each its own batch order, initialisation and masks; here also its own
    corrupted labels), each with DO and every remedy (label smoothing, GCE, SCE, mixup with its
    replicate's lam and permutation), without and with AL2, in one stack of 4 input groups:
    every run ends where the same run trained alone with its loss written per sample ends."""
    grid = GridConfig(**{**EQUIV_GRID, "subset": 128, "seeds": [0], "replicates": 2,
                         "corruption_per_replicate": True,
                         "baselines": ["mixup", "do", "ls", "gce", "sce"]})
    trainer = train_stacked_and_compare_in_float64(grid, trunk)
    assert len(trainer.plan.groups) == 4 and trainer.plan.mixup   # 2 replicates x (plain, mixup)
    assert [r.baseline for r in grid.runs()][-2:] == ["mixup", "mixup"]


@pytest.mark.parametrize("trunk", ["grouped", "streams"])  # the default; the plain kernels
def test_train_grid_matches_runs_trained_alone(tmp_path, trunk):
    """End to end in float32: train_grid gives AL2 runs w_e = get_map_weights(...)[e - 1] in
    epoch e (2.0, then 6.0) and plain runs 0, and its files hold what plain training with the
    loss written out gives: every run's L_c of each epoch, and with the "streams" trunk (the
    plain LeNet's own convolutions) every weight. The grouped trunks round differently in
    float32, and over these 8 large steps a max-pool near-tie (1e-7 apart) can pick another
    winner and move a weight by ~1e-3, rightly either way: their weights are compared in
    float64 (test_stacked_engine_equals_runs_trained_alone_in_float64)."""
    grid = GridConfig(**EQUIV_GRID)
    summary = al2.train_grid(grid, tmp_path / "g", device="cpu", progress=False,
                             speed=Variants(trunk))
    assert summary["runs"] == [r.name for r in grid.runs()]
    data = load_grid_data(grid, torch.device("cpu"))
    for r, run in enumerate(grid.runs()):
        ref, lc_means = plain_reference(run, grid, data, grid.epochs)
        model, config = al2.load_checkpoint(
            tmp_path / "g" / run.name / "checkpoints" / "epoch_2.pt")
        assert config["run"] == run.name
        if trunk == "streams":
            ref_sd = ref.state_dict()
            for k, v in model.state_dict().items():
                assert torch.allclose(v.float(), ref_sd[k].float(), atol=5e-4), (run.name, k)
        rows = read_metrics(tmp_path / "g" / run.name / "metrics.csv")
        for e in (1, 2):
            assert float(rows[e]["train_Lc"]) == pytest.approx(lc_means[e - 1], rel=1e-3)
            expected_w = (2.0, 6.0)[e - 1] if run.use_al2 else 0.0
            assert float(rows[e]["al2_weight"]) == pytest.approx(expected_w)
    config = json.loads((tmp_path / "g" / "bare_plain_s0" / "config.json").read_text())
    assert config["environment"]["trunk"] == trunk


def test_dropout_masks_rate_and_independence():
    """Inverted dropout per run: rate p, scale 1/(1-p), masks independent across runs, p = 0
    untouched."""
    models = [lenet_from_seed(0, dropout=0.5), lenet_from_seed(0, dropout=0.5), lenet_from_seed(0)]
    stacked = StackedLeNet(models)
    x = torch.randn(64, 1, 28, 28)
    clean = stacked.eval().trunk(x)
    noisy = stacked.train().trunk(x, torch.rand(2, 64, 800,
                                                generator=torch.Generator().manual_seed(0)))
    assert torch.equal(noisy[:, 2], clean[:, 2])
    alive = clean[:, 0] > 0  # runs 0 and 1 share weights, so the same units are alive
    kept0, kept1 = noisy[:, 0][alive] > 0, noisy[:, 1][alive] > 0
    assert torch.allclose(noisy[:, 0][alive][kept0], 2 * clean[:, 0][alive][kept0])
    n = alive.sum().item()
    assert n > 5000
    assert abs(kept0.float().mean().item() - 0.5) < 4 * math.sqrt(0.25 / n)
    both = (kept0 & kept1).float().mean().item()
    assert abs(both - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n)


def test_checkpoint_reproduces_metrics_and_activations(tmp_path):
    grid = GridConfig(baselines=["bn", "do"], al2="on", epochs=2, lr=0.05, **TINY)
    al2.train_grid(grid, tmp_path, device="cpu", progress=False)
    data = load_grid_data(grid, torch.device("cpu"))
    for run in grid.runs():
        rows = read_metrics(tmp_path / run.name / "metrics.csv")
        assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
        assert list(rows[0]) == al2.training.folder.METRIC_COLUMNS
        config = json.loads((tmp_path / run.name / "config.json").read_text())
        assert config["activation_images"] == 8 and config["grid"]["epochs"] == 2
        assert "torch" in config["environment"]
        for e in (0, 2):
            model, _ = al2.load_checkpoint(tmp_path / run.name / "checkpoints" / f"epoch_{e}.pt")
            with torch.no_grad():
                log_probs, features = model(data.test_x)
            acc = 100.0 * (log_probs.argmax(1) == data.test_y).double().mean().item()
            assert acc == pytest.approx(float(rows[e]["test_acc"]), abs=1e-4)
            acts = torch.load(tmp_path / run.name / "activations" / f"epoch_{e}.pt")
            assert acts.shape == (8, 800) and acts.dtype == torch.float16
            assert torch.allclose(acts.float(), features[:8], atol=1e-2, rtol=1e-3)
    saved = torch.load(tmp_path / "corruption.pt")
    assert torch.equal(saved["noisy_labels"][:256], data.train_noisy[0])


def assert_same_run(a, b, epochs: int) -> None:
    """Two run folders hold the same metrics (but wall time) and bit-identical final weights."""
    rows_a, rows_b = read_metrics(a / "metrics.csv"), read_metrics(b / "metrics.csv")
    assert len(rows_a) == len(rows_b) == epochs + 1
    for ra, rb in zip(rows_a, rows_b):
        ra.pop("wall_time_s"), rb.pop("wall_time_s")
        assert ra == rb
    wa = torch.load(a / "checkpoints" / f"epoch_{epochs}.pt")["model"]
    wb = torch.load(b / "checkpoints" / f"epoch_{epochs}.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    grid = GridConfig(baselines=["bare", "do"], al2="both", epochs=4, lr=0.05, map_start=0.5,
                      checkpoint_every=2, **TINY)
    al2.train_grid(grid, tmp_path / "a", device="cpu", progress=False)

    def interrupt(epoch, rows):
        if epoch == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        al2.train_grid(grid, tmp_path / "b", device="cpu", progress=False, on_epoch_end=interrupt)
    al2.train_grid(grid, tmp_path / "b", device="cpu", progress=False, resume=True)
    for run in grid.runs():
        assert_same_run(tmp_path / "a" / run.name, tmp_path / "b" / run.name, epochs=4)


def run_cli(*args):
    """code/train.py in this process, as the command line calls it."""
    return main("train", *args)


def test_cli_dry_run_and_help():
    """The real command line, as a subprocess of this interpreter: --dry-run and --help."""
    done = subprocess.run([sys.executable, str(REPO_ROOT / "code" / "train.py"), "--dry-run"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "trained 14 runs" in done.stdout  # Table 1's 8 + Bare's 3 extra instances x 2
    helptext = run_cli("--help").stdout
    for flag in ("--baselines", "--al2", "--seeds", "--percent-corrupt", "--resume",
                 "--checkpoint-epochs", "--preset", "--map-fac2", "Table 1", "--extra-seeds",
                 "--bn-init", "--tf32"):
        assert flag in helptext


@pytest.mark.parametrize("args, message", [
    (["--epochs", "-1"], "epochs"),
    (["--percent-corrupt", "120"], "percent"),
    (["--baselines", "bare,nope"], "unknown baseline"),
    (["--baselines", "bn", "--extra-seeds", "bare=1"], "extra seeds"),
    (["--extra-seeds", "bare"], "BASELINE=SEED"),
    (["--percent-corrupt", "25,25"], "repeated"),
    (["--percent-corrupt", "25,x"], "comma-separated numbers"),
    (["--percent-corrupt", "25,101"], "0..100"),
    (["--shard", "3/3"], "0 <= K < N"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, args, message):
    done = run_cli(*args, "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cli_cuda_without_gpu(tmp_path):
    done = run_cli("--device", "cuda", "--epochs", "1", "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "no CUDA GPU" in done.stderr
    assert not (tmp_path / "o").exists()


def test_cli_refuses_a_folder_holding_another_grid(tmp_path):
    out = str(tmp_path / "o")
    small = ["--subset", "128", "--test-subset", "64", "--baselines", "bare", "--al2", "on",
             "--no-progress", "--out", out]
    assert run_cli("--epochs", "1", *small).returncode == 0
    before = sorted(p.name for p in (tmp_path / "o").rglob("*"))
    done = run_cli("--epochs", "2", *small)
    assert done.returncode == 2 and "different grid" in done.stderr and "epochs" in done.stderr
    done = run_cli("--epochs", "1", *small)
    assert done.returncode == 2 and "--resume" in done.stderr
    assert sorted(p.name for p in (tmp_path / "o").rglob("*")) == before


def test_non_finite_loss_stops_and_names_the_run(tmp_path):
    out = str(tmp_path / "o")
    done = run_cli("--subset", "256", "--test-subset", "64", "--baselines", "bare", "--al2", "off",
                   "--lr", "1e30", "--epochs", "3", "--no-progress", "--out", out)
    assert done.returncode == 1, done.stderr
    assert "bare_plain_s0" in done.stderr and "epoch" in done.stderr
    assert (tmp_path / "o" / "bare_plain_s0" / "checkpoints" / "epoch_0.pt").exists()


def test_bn_gamma_init_uniform_by_default_ones_on_request(tmp_path):
    """The paper's BN runs start from gamma ~ U(0, 1) (PyTorch 0.4/1.1, the authors'), drawn
    from the run's seed; bn_init='ones' is today's PyTorch; runs without BN are untouched."""
    cpu = torch.device("cpu")

    def initial(bn_init, seeds=(0, 1)):
        grid = GridConfig(baselines=["bare", "bn"], al2="off", seeds=list(seeds), bn_init=bn_init,
                          **TINY)
        model = Trainer(grid, grid.runs(), load_grid_data(grid, cpu)).model
        return {r.name: model.run_state_dict(i) for i, r in enumerate(grid.runs())}

    uniform, again, ones = initial("uniform"), initial("uniform"), initial("ones")
    for seed in (0, 1):
        gamma = uniform[f"bn_plain_s{seed}"]["trunk.4.weight"]
        assert gamma.shape == (50,) and gamma.min() >= 0 and gamma.max() < 1
        assert gamma.std() > 0.1  # U(0, 1) has std 0.29: not a constant
        assert torch.equal(gamma, again[f"bn_plain_s{seed}"]["trunk.4.weight"])
        assert torch.equal(ones[f"bn_plain_s{seed}"]["trunk.4.weight"], torch.ones(50))
        assert torch.equal(uniform[f"bn_plain_s{seed}"]["trunk.4.bias"], torch.zeros(50))
        bare_u, bare_o = uniform[f"bare_plain_s{seed}"], ones[f"bare_plain_s{seed}"]
        assert all(torch.equal(bare_u[k], bare_o[k]) for k in bare_u)
    assert not torch.equal(uniform["bn_plain_s0"]["trunk.4.weight"],
                           uniform["bn_plain_s1"]["trunk.4.weight"])
    assert GridConfig().bn_init == "uniform"
    # a checkpoint rebuilds either kind exactly, and config.json records the choice
    for bn_init, expected in (("uniform", uniform), ("ones", ones)):
        grid = GridConfig(baselines=["bn"], al2="off", seeds=[0], epochs=0, bn_init=bn_init, **TINY)
        al2.train_grid(grid, tmp_path / bn_init, device="cpu", progress=False)
        model, config = al2.load_checkpoint(tmp_path / bn_init / "bn_plain_s0" / "checkpoints" /
                                            "epoch_0.pt")
        assert config["bn_init"] == bn_init and config["grid"]["bn_init"] == bn_init
        assert torch.equal(model.state_dict()["trunk.4.weight"],
                           expected["bn_plain_s0"]["trunk.4.weight"])


def test_strict_fp32_is_the_default(tmp_path):
    """TF32 is off unless asked for: the paper trained in fp32. train_grid sets both of
    PyTorch's switches (cuDNN's is on by default in PyTorch) and config.json records them."""
    cli = script("code/train.py")
    grid = cli.grid_from_args(cli.build_parser().parse_args([]))
    assert grid.tf32 is False and GridConfig().tf32 is False
    assert cli.grid_from_args(cli.build_parser().parse_args(["--tf32"])).tf32 is True
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        al2.train_grid(GridConfig(baselines=["bare"], al2="off", epochs=0, **TINY), tmp_path,
                       device="cpu", progress=False)
        assert not torch.backends.cuda.matmul.allow_tf32
        assert not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    config = json.loads((tmp_path / "bare_plain_s0" / "config.json").read_text())
    assert config["grid"]["tf32"] is False
    assert config["environment"]["tf32_matmul"] is False
    assert config["environment"]["tf32_cudnn"] is False


def test_extra_seeds_add_instances_of_one_baseline():
    """Fig. 1 wants 4 instances of Bare, Table 1 every baseline over the same seeds."""
    grid = GridConfig(baselines=["bare", "bn"], seeds=[0], extra_seeds={"bare": [1, 2, 3]})
    names = [r.name for r in grid.runs()]
    assert names == ["bare_plain_s0", "bare_plain_s1", "bare_plain_s2", "bare_plain_s3",
                     "bare_al2_s0", "bare_al2_s1", "bare_al2_s2", "bare_al2_s3",
                     "bn_plain_s0", "bn_al2_s0"]
    assert [r.in_table for r in grid.runs()] == [True, False, False, False] * 2 + [True] * 2
    with pytest.raises(ValueError, match="extra seeds"):
        GridConfig(baselines=["bn"], extra_seeds={"bare": [1]}).validate()
    assert len(GridConfig().runs()) == 8  # the library's default: Table 1 alone


def constant_lenet(*args, **kwargs):
    """A LeNet whose output is known in closed form: zero weights everywhere, conv2 bias 0.5
    (every trunk feature is relu(0.5) = 0.5, so L_r = 0.25) and fc2 bias b (every image gets
    log_softmax(b), class 3 predicted)."""
    model = LeNet()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.trunk[3].bias.fill_(0.5)
        model.head[2].bias.copy_(torch.arange(10.0) * 0.1 + (torch.arange(10) == 3) * 2.0)
    return model


def test_logged_metrics_equal_closed_forms(tmp_path, monkeypatch):
    """L_r = mean(a**2), and metrics.csv's train_Lr, train_Lc, train_acc_noisy/clean, test_loss
    and test_acc, checked against closed forms on a model whose outputs are constant (lr 1e-9:
    the weights stay put to ~1e-9)."""
    features = torch.full((5, 800), 0.5)
    assert al2.activation_loss(features).item() == 0.25
    assert torch.equal(al2.activation_loss(features[:, None].expand(5, 3, 800), dims=(0, 2)),
                       torch.full((3,), 0.25))
    monkeypatch.setattr(al2.training.stack, "lenet_from_seed", constant_lenet)
    grid = GridConfig(baselines=["bare"], al2="both", epochs=1, lr=1e-9, **TINY)
    al2.train_grid(grid, tmp_path, device="cpu", progress=False)
    data = load_grid_data(grid, torch.device("cpu"))
    log_p = torch.log_softmax(constant_lenet().head[2].bias.double(), 0)     # (10,)
    for run in grid.runs():
        rows = read_metrics(tmp_path / run.name / "metrics.csv")
        for row in rows:  # epoch 0 (initialisation) and 1
            assert float(row["test_loss"]) == pytest.approx(-log_p[data.test_y].mean().item(),
                                                             rel=1e-6)
            assert float(row["test_acc"]) == pytest.approx(
                100.0 * (data.test_y == 3).double().mean().item(), abs=1e-9)
        row = rows[1]
        assert float(row["train_Lr"]) == pytest.approx(0.25, rel=1e-6)
        # 256 images in 4 full batches: the mean of batch means is the mean over all images
        assert float(row["train_Lc"]) == pytest.approx(-log_p[data.train_noisy[0]].mean().item(),
                                                       rel=1e-6)
        assert float(row["train_acc_noisy"]) == pytest.approx(
            100.0 * (data.train_noisy[0] == 3).double().mean().item(), abs=1e-9)
        assert float(row["train_acc_clean"]) == pytest.approx(
            100.0 * (data.train_clean == 3).double().mean().item(), abs=1e-9)
        assert (data.train_noisy[0] == 3).sum() != (data.train_clean == 3).sum()  # not vacuous


def final_weights(**changes):
    """Each run's state after one epoch of a 4-baseline grid (one seed, without AL2)."""
    grid = GridConfig(**{**dict(baselines=["bare", "bn", "do", "wd"], al2="off", epochs=1,
                                lr=0.05, **TINY), **changes})
    trainer = Trainer(grid, grid.runs(), load_grid_data(grid, torch.device("cpu")))
    trainer.train_epoch(0, torch.zeros(len(grid.runs())))
    return {r.baseline: trainer.model.run_state_dict(i) for i, r in enumerate(grid.runs())}


def changed(a, b):
    return {name for name in a if any(not torch.equal(a[name][k], b[name][k]) for k in a[name])}


def test_each_regulariser_acts_on_its_baseline_alone():
    """Observed from the weights' trajectories: changing the weight decay changes only the WD
    run, changing the dropout rate only the DO run, changing BN's initial gamma only the BN
    run; and only the BN run's normalisation statistics move."""
    base = final_weights()
    assert changed(base, final_weights(weight_decay=0.2)) == {"wd"}
    assert changed(base, final_weights(dropout=0.2)) == {"do"}
    assert changed(base, final_weights(bn_init="ones")) == {"bn"}
    assert changed(base, final_weights(weight_decay=0.2, dropout=0.2)) == {"wd", "do"}
    assert base["bn"]["trunk.4.running_mean"].abs().sum() > 0
    assert all("trunk.4.running_mean" not in base[b] for b in ("bare", "do", "wd"))


def test_cli_defaults_are_the_papers_and_presets_yield_to_flags():
    """python code/train.py with no flags is the paper's setting (values written here from the
    paper and the authors' code); --preset quick has its documented values; a flag beats it."""
    cli = script("code/train.py")

    def grid(*argv):
        return cli.grid_from_args(cli.build_parser().parse_args(list(argv)))
    paper = grid()
    assert (paper.baselines, paper.al2, paper.seeds, paper.extra_seeds) == \
        (["bare", "bn", "do", "wd"], "both", [0], {"bare": [1, 2, 3]})
    assert (paper.epochs, paper.percent_corrupt, paper.lr, paper.momentum, paper.batch_size) == \
        (700, 75.0, 0.001, 0.5, 64)
    assert (paper.map_start, paper.map_threshold, paper.map_fac1, paper.map_fac2) == \
        (0.01, 5.0, 1.1, 1.01)
    assert (paper.dropout, paper.weight_decay, paper.bn_init, paper.tf32) == \
        (0.5, 5e-4, "uniform", False)
    assert (paper.subset, paper.test_subset) == (None, None)
    assert len(paper.runs()) == 14
    quick = grid("--preset", "quick")
    assert (quick.epochs, quick.subset, quick.test_subset, quick.lr, quick.map_fac1,
            quick.map_threshold, quick.map_fac2, quick.weight_decay, quick.checkpoint_every,
            quick.extra_seeds) == (35, 8000, 2000, 0.05, 1.86, 50.0, 1.068, 5e-4, 5,
                                   {"bare": [1]})
    assert (quick.momentum, quick.batch_size, quick.map_start) == (0.5, 64, 0.01)
    assert grid("--preset", "quick", "--lr", "0.1", "--epochs", "3").lr == 0.1
    assert grid("--preset", "quick", "--epochs", "3").epochs == 3
    assert grid("--preset", "quick", "--extra-seeds", "none").extra_seeds == {}
    assert grid("--baselines", "bn,wd").extra_seeds == {}


@pytest.mark.parametrize("grid_changes", [
    {},                                                            # the paper's four baselines
    {"baselines": ["bare", "do", "gce", "mixup"], "replicates": 2}])  # input groups, mixup
def test_static_step_equals_the_eager_step(grid_changes):
    """The CUDA-graph path without the capture: full batches through StaticStep's fixed
    buffers (batch indices of every replicate, dropout uniforms, mixup's lam and permutation,
    AL2 weight, metric sums), the last partial batch eagerly on the same buffers, equals the
    plain epoch bit for bit (dropout included, two epochs with different AL2 weights)."""
    grid = GridConfig(**{**dict(baselines=["bare", "bn", "do", "wd"], al2="both", epochs=2,
                                lr=0.05, **{**TINY, "subset": 200}),        # 3 full batches + 8
                         **grid_changes})
    data = load_grid_data(grid, torch.device("cpu"))
    results = []
    for use_step in (False, True):
        trainer = Trainer(grid, grid.runs(), data)
        if use_step:
            trainer.fast_step = StaticStep(trainer, graph=False)
        sums = []
        for i, w in enumerate((0.5, 2.0)):
            s = trainer.train_epoch(i, torch.tensor([w if r.use_al2 else 0.0
                                                     for r in grid.runs()]))
            assert s["batches"] == 4 and s["samples"] == 200
            sums.append(s)
        results.append((trainer.state_dict(), sums))
    (sd_a, sums_a), (sd_b, sums_b) = results
    assert all(torch.equal(sd_a["model"][k], sd_b["model"][k]) for k in sd_a["model"])
    assert all(torch.equal(a, b) for a, b in zip(sd_a["momentum"], sd_b["momentum"]))
    assert sums_a == sums_b and sums_a[0] != sums_a[1]


@pytest.mark.parametrize("momentum", [0.5, 0.9])
def test_the_flat_optimiser_equals_torch_sgd(momentum):
    """speed.flat_sgd.FlatSGD (a speed variant the GPU probe may choose) against the plain optimiser
    (training.sgd.RunSGD: torch.optim.SGD with each run's weight decay added to its rows): two
    epochs of the paper's baselines with and without AL2 (weight decay, batch norm and dropout
    runs, the last partial batch). With the paper's momentum 0.5 they end with the same weights,
    momentum and metric sums, bit for bit; with 0.9 within float32 rounding: FlatSGD forms
    d + m * buf in one fused multiply-add, torch.optim.SGD rounds m * buf first, which is exact
    only when m is a power of two."""
    grid = GridConfig(baselines=["bare", "bn", "do", "wd"], al2="both", epochs=2, lr=0.05,
                      momentum=momentum, weight_decay=5e-3, **{**TINY, "subset": 200})
    data = load_grid_data(grid, torch.device("cpu"))
    results = []
    for optimizer in ("torch", "flat"):
        trainer = Trainer(grid, grid.runs(), data)
        Variants(optimizer=optimizer)(trainer)
        sums = [trainer.train_epoch(i, torch.tensor([w if r.use_al2 else 0.0
                                                     for r in grid.runs()]))
                for i, w in enumerate((0.5, 2.0))]
        results.append((trainer.state_dict(), sums))
    (sd_a, sums_a), (sd_b, sums_b) = results
    pairs = [(sd_a["model"][k], sd_b["model"][k]) for k in sd_a["model"]] + \
        list(zip(sd_a["momentum"], sd_b["momentum"]))
    assert any(m.abs().sum() > 0 for m in sd_a["momentum"])
    if momentum == 0.5:
        assert all(torch.equal(a, b) for a, b in pairs) and sums_a == sums_b
    else:
        assert all(torch.allclose(a.double(), b.double(), rtol=1e-4, atol=1e-6)
                   for a, b in pairs)
        assert not all(torch.equal(a, b) for a, b in pairs)


def test_time_budget_stops_cleanly_then_resumes_to_the_same_end(tmp_path, monkeypatch):
    """--time-budget: the grid stops after the epoch past which the next would not fit (here
    forced after epoch 2, not a checkpoint epoch), with every run's checkpoint at the stop and
    evaluable files; --resume then ends where an uninterrupted grid ends."""
    grid = GridConfig(baselines=["bare", "do"], al2="both", epochs=4, lr=0.05, map_start=0.5,
                      checkpoint_every=10, **TINY)
    al2.train_grid(grid, tmp_path / "a", device="cpu", progress=False)
    with monkeypatch.context() as m:
        m.setattr(al2.training.grid, "past_budget",
                  lambda elapsed, trained, budget: trained == 2)
        summary = al2.train_grid(grid, tmp_path / "b", device="cpu", progress=False,
                                 time_budget_s=60.0)
    assert summary["stopped_at"] == 2
    runs = al2.analyses.runs.discover_runs(tmp_path / "b")
    assert {r.epochs for r in runs} == {2}
    assert all(r.checkpoint(2).exists() for r in runs)
    result = al2.analyses.evaluation.evaluate_runs(runs, tmp_path / "b", tmp_path / "eval",
                                          ablation_images=50, ablation_draws=1)
    assert len(result.problems) == 1 and "has not finished" in result.problems[0]
    assert {int(r["epoch"]) for r in read_metrics(tmp_path / "eval" / "similarity.csv")} == \
        {0, 1, 2}
    summary = al2.train_grid(grid, tmp_path / "b", device="cpu", progress=False, resume=True)
    assert summary["stopped_at"] is None
    for run in grid.runs():
        assert_same_run(tmp_path / "a" / run.name, tmp_path / "b" / run.name, epochs=4)
    config = json.loads((tmp_path / "b" / "bare_plain_s0" / "config.json").read_text())
    assert len(config["resumes"]) == 1 and config["command"] == ""
    assert config["resumes"][0]["after_epoch"] == 2


def test_a_runs_dropout_masks_do_not_depend_on_its_grid(float64):
    """Each dropout run draws from its own stream (keyed by the run), so the same DO run
    trained beside other runs, or stacked in another order, ends with the same weights."""
    cpu = torch.device("cpu")

    def do_run_after_one_epoch(baselines):
        grid = GridConfig(baselines=baselines, al2="on", epochs=1, lr=0.05, **TINY)
        runs = grid.runs()
        data = load_grid_data(grid, cpu)
        data.train_x = data.train_x.double()
        trainer = Trainer(grid, runs, data)
        trainer.train_epoch(0, torch.ones(len(runs)))
        return trainer.model.run_state_dict([r.baseline for r in runs].index("do"))
    alone, first, last = (do_run_after_one_epoch(b) for b in
                          (["do"], ["do", "bare", "wd"], ["bn", "wd", "do"]))
    for k in alone:
        assert torch.allclose(alone[k], first[k], atol=1e-12, rtol=0), k
        assert torch.allclose(alone[k], last[k], atol=1e-12, rtol=0), k


def test_a_finished_grid_extended_equals_one_trained_that_long(tmp_path):
    """`--epochs 6 --resume` on a finished 4-epoch grid (a noise sweep of two levels, with
    dropout: every stack resumes, every mask stream continues) ends bit for bit where the
    6-epoch grid trained from the start ends: every epoch's metrics, the weights, momentum and
    metric history of the resume state. The configs and grid.json say 6 epochs and when the
    grid was extended; the evaluation finds it finished. Another change is still refused in
    one line, and so is a shorter grid."""
    flags = ["--baselines", "bare,do", "--percent-corrupt", "50,75", "--lr", "0.05",
             "--subset", "128", "--test-subset", "64", "--activation-images", "8",
             "--checkpoint-epochs", "3", "--no-progress"]
    assert main("train", *flags, "--epochs", "6", "--out", str(tmp_path / "a")).returncode == 0
    assert main("train", *flags, "--epochs", "4", "--out", str(tmp_path / "b")).returncode == 0
    shorter = main("train", *flags, "--epochs", "3", "--resume", "--out", str(tmp_path / "b"))
    other = main("train", *flags, "--epochs", "6", "--lr", "0.1", "--resume",
                 "--out", str(tmp_path / "b"))
    for refused in (shorter, other):
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "not shortened" in shorter.stderr and "differs in epochs, lr)" in other.stderr
    assert main("train", *flags, "--epochs", "6", "--resume",
                "--out", str(tmp_path / "b")).returncode == 0
    for run in al2.analyses.runs.discover_runs(tmp_path / "a"):
        assert_same_run(tmp_path / "a" / run.name, tmp_path / "b" / run.name, epochs=6)
        config = json.loads((tmp_path / "b" / run.name / "config.json").read_text())
        assert config["grid"]["epochs"] == 6 and config["resumes"][-1]["epochs_before"] == 4
        assert set(config["checkpoint_epochs"]) == {0, 1, 3, 4, 6}
    for level in ("50", "75"):
        a, b = (torch.load(tmp_path / x / f"resume-n{level}.pt") for x in "ab")
        assert a["epoch"] == b["epoch"] == 6 and a["runs"] == b["runs"]
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        assert all(torch.equal(x, y) for x, y in zip(a["momentum"], b["momentum"]))
        def history(state):  # NaN (epoch 0's training metrics) compared as text
            return repr([[{k: v for k, v in row.items() if k != "wall_time_s"} for row in h]
                         for h in state["history"]])
        assert history(a) == history(b)
    assert json.loads((tmp_path / "b" / "grid.json").read_text())["epochs"] == 6
    assert al2.training.folder.GridFolder(tmp_path / "b").split.finished()


def test_the_vmap_peer_takes_each_runs_plain_sgd_step():
    """bench_train's torch.func peer (al2.speed.peers.Ensemble) is a fair rival: two of its
    steps move each run's weights as torch.optim.SGD moves that run trained alone (Bare and WD,
    without and with AL2: each its own weight decay and AL2 weight)."""
    from al2.method.loss import al2_loss
    from al2.speed.peers import AL2_WEIGHT, Ensemble
    grid = GridConfig(baselines=["bare", "wd"], al2="both", lr=0.05, **TINY)
    data = load_grid_data(grid, torch.device("cpu"))
    batches = [(data.train_x[s:s + 64], data.train_noisy[0][s:s + 64]) for s in (0, 64)]
    ensemble = Ensemble(grid.runs(), grid, torch.device("cpu"))
    for x, y in batches:
        ensemble.step(x, y)
    for k, run in enumerate(grid.runs()):
        model = lenet_from_seed(run.seed).train()
        opt = torch.optim.SGD(model.parameters(), lr=grid.lr, momentum=grid.momentum,
                              weight_decay=run.weight_decay)
        w = torch.tensor([AL2_WEIGHT if run.use_al2 else 0.0])
        for x, y in batches:
            log_probs, features = model(x)
            opt.zero_grad()
            al2_loss(log_probs[None], features[:, None], y, w)[0].backward()
            opt.step()
        for name, p in model.named_parameters():
            assert torch.allclose(ensemble.params[name][k], p, atol=1e-6), (run.name, name)
        assert not torch.equal(p, lenet_from_seed(run.seed).state_dict()[name])
