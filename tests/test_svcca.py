"""svcca: invariances, an independent QR computation, the numpy reference, edge cases."""
import itertools

import numpy as np
import pytest
import torch

import svcca
from svcca import reference_numpy as ref


def related(p=12, q=9, n=3000, seed=0, offset=0.0):
    """Two representations sharing a 4-dimensional latent, plus private noise."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(4, n))
    x = rng.normal(size=(p, 4)) @ z + 0.7 * rng.normal(size=(p, n)) + offset
    y = rng.normal(size=(q, 4)) @ z + 0.7 * rng.normal(size=(q, n)) + offset
    return x, y


def all_stats(x, y):
    return {"mean": svcca.get_cca_similarity(x, y)["mean"][0],
            "mean_all": svcca.get_cca_similarity(x, y)["mean_all"],
            "svcca": svcca.compute_svcca(x, y, keep_dims=5)["svcca"],
            "pwcca": svcca.compute_pwcca(x, y)[0],
            "pwcca_ref": svcca.compute_pwcca(x, y, variant="reference")[0],
            "cka": svcca.linear_cka(x, y), "cka_deb": svcca.linear_cka(x, y, debiased=True)}


def test_identity_gives_one_for_every_measure():
    x, _ = related()
    for name, value in all_stats(x, x).items():
        assert value == pytest.approx(1.0, abs=1e-9), name


def qr_canonical_correlations(x, y):
    """Independent route: canonical correlations = singular values of Qx^T Qy, with Q the
    orthonormal bases of the centred datapoint spaces."""
    qx, _ = np.linalg.qr((x - x.mean(1, keepdims=True)).T)
    qy, _ = np.linalg.qr((y - y.mean(1, keepdims=True)).T)
    return np.linalg.svd(qx.T @ qy, compute_uv=False)


def test_coefficients_equal_an_independent_qr_computation():
    x, y = related()
    got = svcca.get_cca_similarity(x, y)["cca_coef1"]
    assert np.allclose(got, qr_canonical_correlations(x, y), atol=1e-8, rtol=0)
    assert np.all(np.diff(got) <= 1e-12)  # descending
    assert len(got) == 9


def test_cca_invariant_to_invertible_maps_translation_scaling():
    x, y = related()
    rng = np.random.default_rng(1)
    a = rng.normal(size=(12, 12))  # invertible with probability 1
    base = svcca.get_cca_similarity(x, y)["cca_coef1"]
    for x2 in (a @ x, x + 5.0, 7.5 * x, x * rng.uniform(0.1, 10, size=(12, 1))):
        assert np.allclose(svcca.get_cca_similarity(x2, y)["cca_coef1"], base, atol=1e-8)


def test_svcca_and_cka_invariant_to_orthogonal_maps_isotropic_scaling_translation():
    x, y = related()
    q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(12, 12)))
    base_sv = svcca.compute_svcca(x, y, keep_dims=5)["svcca"]
    base_cka = svcca.linear_cka(x, y)
    for x2 in (q @ x, 3.0 * x, x - 2.0):
        assert svcca.compute_svcca(x2, y, keep_dims=5)["svcca"] == pytest.approx(base_sv, abs=1e-9)
        assert svcca.linear_cka(x2, y) == pytest.approx(base_cka, abs=1e-12)
    a = np.diag(np.linspace(0.1, 5, 12))  # not orthogonal
    assert abs(svcca.linear_cka(a @ x, y) - base_cka) > 1e-3


def test_pwcca_invariant_to_scaling_translation_signed_permutations():
    x, y = related(p=9, q=12)  # x is the smaller side: its neurons carry the weights
    base = svcca.compute_pwcca(x, y)[0]
    rng = np.random.default_rng(3)
    perm = rng.permutation(9)
    signs = rng.choice([-1.0, 1.0], size=(9, 1))
    for x2 in (4.0 * x, x + 50.0, signs * x[perm]):
        assert svcca.compute_pwcca(x2, y)[0] == pytest.approx(base, abs=1e-10)


def test_independent_noise_gives_low_similarity():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(10, 20000)), rng.normal(size=(10, 20000))
    stats = all_stats(x, y)
    for name in ("mean", "mean_all", "svcca", "pwcca", "pwcca_ref"):
        assert stats[name] < 0.05, name
    assert stats["cka"] < 0.01
    assert abs(stats["cka_deb"]) < 1e-3


def test_debiased_cka_removes_the_small_sample_bias():
    """With few datapoints, linear CKA of independent noise is biased upwards (~p/n); the
    unbiased HSIC estimator brings it near 0, so ignoring `debiased` fails here."""
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(10, 300)), rng.normal(size=(10, 300))
    biased, debiased = svcca.linear_cka(x, y), svcca.linear_cka(x, y, debiased=True)
    assert biased > 0.02
    assert abs(debiased) < biased / 10
    pair = svcca.pairwise([x, y], statistics=("cka", "cka_debiased"))
    assert pair["cka_debiased"][0] == pytest.approx(debiased, abs=1e-12)
    assert pair["cka"][0] == pytest.approx(biased, abs=1e-12)


def test_matches_the_numpy_reference_with_offsets_and_both_orders():
    """Coefficients to 1e-8, PWCCA (both variants) to 1e-6, unequal neuron counts in either
    order, and a +50 offset per neuron (ReLU-like data) where the reference variant's
    added-back means matter."""
    x, y = related(p=7, q=11, offset=50.0)
    x, y = np.maximum(x, 48.0), np.maximum(y, 48.0)
    for a, b in ((x, y), (y, x)):
        r = ref.cca(a, b)
        got = svcca.get_cca_similarity(a, b)
        assert np.allclose(got["cca_coef1"], r["cca_coef1"], atol=1e-8)
        assert got["mean"][0] == pytest.approx(r["mean"], abs=1e-10)
        assert svcca.compute_pwcca(a, b, variant="reference")[0] == pytest.approx(
            ref.pwcca(a, b)[0], abs=1e-6)
        assert svcca.compute_svcca(a, b, keep_dims=5)["svcca"] == pytest.approx(
            ref.svcca(a, b, keep_dims=5), abs=1e-8)
    # the published formula does not see the offset; the reference variant does
    morcos = svcca.compute_pwcca(x, y)[0]
    assert svcca.compute_pwcca(x - 50.0, y - 50.0)[0] == pytest.approx(morcos, abs=1e-10)


def test_dead_neurons_equal_their_removal():
    x, y = related()
    dead = np.vstack([x, np.full((3, x.shape[1]), 0.0), np.full((1, x.shape[1]), 2.5)])
    full = svcca.get_cca_similarity(dead, y)
    kept = svcca.get_cca_similarity(x, y)
    assert full["x_idxs"].sum() == 12 and not full["x_idxs"][12:].any()
    assert np.allclose(full["cca_coef1"], kept["cca_coef1"], atol=1e-12)
    assert svcca.compute_pwcca(dead, y)[0] == pytest.approx(svcca.compute_pwcca(x, y)[0])
    assert svcca.compute_pwcca(y, dead)[0] == pytest.approx(svcca.compute_pwcca(y, x)[0])


def test_large_offsets_take_the_explicitly_centred_path():
    """Centring by subtraction (X Y^T - n m m^T) would lose accuracy when a mean dwarfs the
    spread (here 1e6 against unit variance); those inputs are centred explicitly and still
    equal the numpy reference; moderate offsets take the fast path and agree too."""
    from svcca import core
    for offset, centred in ((1e6, True), (3.0, False)):
        x, y = related(p=8, q=6, offset=offset)
        mean = torch.as_tensor(x).mean(1)
        fast = torch.as_tensor(x @ x.T) - x.shape[1] * torch.outer(mean, mean)
        assert core.needs_centring(mean, fast.diagonal(), x.shape[1]) == centred
        coefs = svcca.get_cca_similarity(x, y)["cca_coef1"]
        assert np.allclose(coefs, ref.cca(x, y)["cca_coef1"], atol=1e-8)
        pair = svcca.pairwise([x, y], statistics=("mean_cca",))["mean_cca"][0]
        assert pair == pytest.approx(ref.cca(x, y)["mean"], abs=1e-8)


def test_epsilon_drops_low_variance_neurons():
    x, y = related()
    x[0] *= 1e-6
    res = svcca.get_cca_similarity(x, y, epsilon=1e-8)
    assert not res["x_idxs"][0] and res["x_idxs"][1:].all()


def test_float32_and_tensor_inputs_are_upcast():
    x, y = related()
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    a = svcca.compute_pwcca(x32, y32)[0]
    b = svcca.compute_pwcca(x32.astype(np.float64), y32.astype(np.float64))[0]
    c = svcca.compute_pwcca(torch.from_numpy(x32), torch.from_numpy(y32))[0]
    assert a == b == c


def test_svcca_variance_rule():
    x, y = related()
    xc = x - x.mean(1, keepdims=True)
    s2 = np.linalg.svd(xc, compute_uv=False) ** 2
    k = int(np.searchsorted(np.cumsum(s2) / s2.sum(), 0.9) + 1)
    assert svcca.compute_svcca(x, y, variance=0.9)["kept_dims"][0] == k


def test_batched_equals_looped():
    reps = [related(seed=s)[0] for s in range(3)] + [related(seed=9)[1]]
    got = svcca.pairwise(reps, statistics=svcca.STATISTICS, keep_dims=5)
    for k, (i, j) in enumerate([(i, j) for i in range(4) for j in range(i + 1, 4)]):
        a, b = reps[i], reps[j]
        assert got["mean_cca"][k] == pytest.approx(svcca.get_cca_similarity(a, b)["mean"][0])
        assert got["mean_cca_all"][k] == pytest.approx(svcca.get_cca_similarity(a, b)["mean_all"])
        assert got["svcca"][k] == pytest.approx(svcca.compute_svcca(a, b, keep_dims=5)["svcca"])
        assert got["pwcca"][k] == pytest.approx(svcca.compute_pwcca(a, b)[0])
        assert got["pwcca_reference"][k] == pytest.approx(
            svcca.compute_pwcca(a, b, variant="reference")[0])
        assert got["cka"][k] == pytest.approx(svcca.linear_cka(a, b))
        assert got["cka_debiased"][k] == pytest.approx(svcca.linear_cka(a, b, debiased=True))


def test_only_linked_representations_share_a_gram_product():
    """Pairs that link some representations: one Gram product per linked group (representation
    5 is in none); each pair's statistics equal those of the same pair among all pairs, and
    torch's thread count is restored."""
    from svcca.batched import linked_groups
    assert linked_groups(6, [(0, 2), (2, 4), (1, 3)]) == [[0, 2, 4], [1, 3]]
    assert linked_groups(3, []) == []
    reps = [related(seed=s)[k] for s in range(3) for k in range(2)]
    everything = svcca.pairwise(reps, statistics=svcca.STATISTICS)
    order = list(itertools.combinations(range(6), 2))
    pairs = [(0, 2), (2, 4), (1, 3), (4, 0)]
    threads = torch.get_num_threads()
    some = svcca.pairwise(reps, statistics=svcca.STATISTICS, pairs=pairs)
    assert torch.get_num_threads() == threads
    for k, (i, j) in enumerate(pairs):
        k_all = order.index((min(i, j), max(i, j)))
        for name in svcca.STATISTICS:
            if (i, j) == (4, 0) and name.startswith("pwcca"):
                continue  # PWCCA is not symmetric
            assert some[name][k] == pytest.approx(everything[name][k_all], abs=1e-12), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cpu_equals_gpu():
    x, y = (torch.from_numpy(a) for a in related())
    cpu = svcca.pairwise([x, y], statistics=svcca.STATISTICS)
    gpu = svcca.pairwise([x.cuda(), y.cuda()], statistics=svcca.STATISTICS)
    for name in svcca.STATISTICS:
        assert np.allclose(cpu[name], gpu[name], atol=1e-8), name


@pytest.mark.parametrize("a, b, message", [
    (np.zeros((3, 100)), np.zeros((3, 99)), "different datapoint counts"),
    (np.ones((50, 20)), np.ones((50, 20)), "fewer datapoints"),
    (np.full((2, 10), np.nan), np.ones((2, 10)), "non-finite"),
    (np.ones(10), np.ones(10), "2-D"),
])
def test_input_errors(a, b, message):
    with pytest.raises(ValueError, match=message):
        svcca.get_cca_similarity(a, b)


def authors_inputs(p, q, n=3000, seed=0):
    """Fixed ReLU-like activations with a shared 6-dimensional latent (legacy RandomState, whose
    stream numpy keeps stable across versions)."""
    rng = np.random.RandomState(seed)
    z = rng.randn(6, n)
    a = np.maximum(rng.randn(p, 6) @ z + 0.8 * rng.randn(p, n) + 0.3, 0) + 2.0
    b = np.maximum(rng.randn(q, 6) @ z + 1.2 * rng.randn(q, n), 0)
    return a, b


# google/svcca (cca_core.py at 08f8935e, pwcca.py at 1f9f7ea4) called on authors_inputs exactly
# as the AL2 authors' code/evaluate.py calls it, epsilon=1e-10: get_cca_similarity(a, b)
# ['mean'][0]; their get_svcca_similarity (centre, s[:10] * V[:10], get_cca_similarity)
# ['mean'][0]; pwcca.compute_pwcca(a, b)[0]. Computed once with that code (numpy 2.4.6,
# outside this repository, which holds none of it) and recorded here.
GOOGLE_SVCCA_NUMBERS = {
    (20, 20): {"mean_cca_authors": 0.512790934048017, "svcca_authors": 0.6800783925929657,
               "pwcca_authors": 0.7172261209523566},
    (14, 20): {"mean_cca_authors": 0.5448258679272071, "svcca_authors": 0.6239187616512691,
               "pwcca_authors": 0.703697218089173},
}


@pytest.mark.parametrize("shape", sorted(GOOGLE_SVCCA_NUMBERS))
def test_authors_statistics_equal_google_svcca_as_the_authors_call_it(shape):
    """The three 'as published' columns of similarity.csv reproduce google/svcca's numbers."""
    from al2.analyses.similarity import AUTHORS_STATISTICS, similarity_rows
    a, b = authors_inputs(*shape)
    rows = similarity_rows({"a": torch.as_tensor(a), "b": torch.as_tensor(b)},
                           [("pair", "a", "b")], epoch=0)
    got = {r["statistic"]: r["value"] for r in rows}
    for stat in AUTHORS_STATISTICS:
        assert got[stat] == pytest.approx(GOOGLE_SVCCA_NUMBERS[shape][stat], abs=1e-10), stat
    # the single calls agree with the batched path
    assert svcca.compute_pwcca(a, b, epsilon=1e-10, variant="reference")[0] == pytest.approx(
        GOOGLE_SVCCA_NUMBERS[shape]["pwcca_authors"], abs=1e-10)
    assert svcca.compute_svcca(a, b, keep_dims=10, epsilon=1e-10)["mean"][0] == pytest.approx(
        GOOGLE_SVCCA_NUMBERS[shape]["svcca_authors"], abs=1e-10)
    # and the truncated means are not the plain ones (the test can tell them apart)
    assert abs(got["mean_cca_all"] - got["mean_cca_authors"]) > 1e-3
    assert abs(got["pwcca_morcos"] - got["pwcca_authors"]) > 1e-4
