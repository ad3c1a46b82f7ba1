"""The remedies' losses (al2.method.remedies) against per-sample formulas written out here, in
float64, for one model and for stacked runs; mixup's draws; and a training loop of one's own
using them beside al2.AL2."""
import math

import pytest
import torch
import torch.nn.functional as F

import al2
import al2.method.loss
from al2 import remedies
from al2.training.config import GridConfig


@pytest.fixture
def batch(float64):
    g = torch.Generator().manual_seed(0)
    log_probs = torch.log_softmax(3 * torch.randn(3, 7, 10, generator=g), -1)   # (R, N, C)
    targets = torch.randint(0, 10, (7,), generator=g)
    return log_probs, targets


def per_sample(formula, log_probs, targets):
    """The batch mean of formula(p, y) over samples, by a plain loop in Python floats (p a list
    of 10 probabilities), for one run (N, C)."""
    return sum(formula(log_probs[i].exp().tolist(), int(targets[i]))
               for i in range(len(targets))) / len(targets)


def test_each_loss_equals_its_formula_per_sample(batch):
    log_probs, y = batch
    eps, q, alpha, beta, A = 0.1, 0.7, 0.01, 1.0, -4.0
    formulas = {
        "ls": (lambda lp, t: remedies.label_smoothing_loss(lp, t, eps),
               lambda p, c: -sum(((1 - eps) * (k == c) + eps / 10) * math.log(p[k])
                                 for k in range(10))),
        "gce": (lambda lp, t: remedies.gce_loss(lp, t, q), lambda p, c: (1 - p[c] ** q) / q),
        "sce": (lambda lp, t: remedies.sce_loss(lp, t, alpha, beta, A),
                lambda p, c: alpha * -math.log(p[c]) +
                beta * -sum(p[k] * (0.0 if k == c else A) for k in range(10))),
        "ce": (al2.method.loss.cross_entropy, lambda p, c: -math.log(p[c])),
    }
    for name, (loss, formula) in formulas.items():
        stacked = loss(log_probs, y)                                        # (R,) one per run
        assert stacked.shape == (3,)
        for r in range(3):
            assert stacked[r].item() == pytest.approx(per_sample(formula, log_probs[r], y),
                                                      rel=1e-12), name
            assert loss(log_probs[r], y).item() == pytest.approx(stacked[r].item(), rel=1e-12)
    # label smoothing is PyTorch's own; cross-entropy with GCE's q -> 0, MAE at q = 1
    assert remedies.label_smoothing_loss(log_probs[0], y, 0.1).item() == pytest.approx(
        F.cross_entropy(log_probs[0], y, label_smoothing=0.1).item(), rel=1e-12)
    assert remedies.gce_loss(log_probs[0], y, 1e-6).item() == pytest.approx(
        al2.method.loss.cross_entropy(log_probs[0], y).item(), rel=1e-5)


def test_mixup_loss_and_inputs(batch):
    log_probs, y = batch
    y_b = y.roll(1)
    lam = torch.tensor([0.3, 0.5, 0.9])
    got = remedies.mixup_loss(log_probs, y, y_b, lam)
    for r in range(3):
        expected = sum(-lam[r] * log_probs[r, i, y[i]] - (1 - lam[r]) * log_probs[r, i, y_b[i]]
                       for i in range(7)) / 7
        assert got[r].item() == pytest.approx(expected.item(), rel=1e-12)
    x = torch.randn(4, 1, 28, 28)
    perm = torch.tensor([2, 0, 3, 1])
    assert torch.equal(remedies.mix_inputs(x, 0.25, perm), 0.25 * x + 0.75 * x[perm])


def test_mixup_draws_are_beta_permutations_and_reproducible():
    """Per replicate and step one lam ~ Beta(alpha, alpha) and one permutation of the batch (the
    last, partial one permuting its own positions); the same seed gives the same draws, another
    replicate key others."""
    a = remedies.mixup_draws(8.0, 0, 3, [0, 12345], samples=1000, batch_size=64)
    b = remedies.mixup_draws(8.0, 0, 3, [0, 12345], samples=1000, batch_size=64)
    assert torch.equal(a.lam, b.lam) and torch.equal(a.perm, b.perm)
    assert a.lam.shape == (2, 16) and a.perm.shape == (2, 16, 64)
    assert not torch.equal(a.lam[0], a.lam[1])
    for k in range(2):
        for s in range(16):
            size = 64 if s < 15 else 1000 - 15 * 64
            assert sorted(a.perm[k, s, :size].tolist()) == list(range(size))
    many = remedies.mixup_draws(8.0, 1, 0, list(range(20)), samples=64 * 50, batch_size=64)
    assert abs(many.lam.mean().item() - 0.5) < 0.02          # Beta(8, 8): mean 1/2, sd 0.121
    assert abs(many.lam.std().item() - 1 / (2 * math.sqrt(17))) < 0.02


def test_the_defaults_are_the_papers_and_named_once():
    grid = GridConfig()
    assert (grid.label_smoothing, grid.gce_q, grid.sce_alpha, grid.sce_beta, grid.sce_log_clip,
            grid.mixup_alpha) == (0.1, 0.7, 0.01, 1.0, -4.0, 8.0)
    assert set(grid.remedy_params()) == set(remedies.DEFAULTS)
    assert all(isinstance(source, str) and source for _, source in remedies.DEFAULTS.values())


def test_a_remedy_in_a_loop_of_ones_own_beside_al2(float64):
    """GCE + AL2 in a plain training loop: the loss is GCE's per-sample formula plus
    w_e mean(a^2), and it trains (the loss falls)."""
    torch.manual_seed(0)
    model = al2.lenet_from_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    losses = []
    with al2.AL2(model, trunk="trunk", schedule=al2.AL2Schedule(start=0.5)) as reg:
        for _ in range(5):
            log_probs, features = model(x)
            loss = al2.method.remedies.gce_loss(log_probs, y) + reg.penalty()
            expected = ((1 - log_probs.exp().gather(1, y[:, None]) ** 0.7) / 0.7).mean() + \
                0.5 * features.pow(2).mean()
            assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert losses[-1] < losses[0]
