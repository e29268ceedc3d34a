"""Cross-task preference transfer: label transfer along plans, solvers, calibration, the
transfer source's contract and its bad-input errors."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_episode, named
from test_teacher import PreferenceSourceContract

from robopref.errors import ConfigError
from robopref.preferences import PREFERENCE_SOURCES, ScriptedTeacher, sample_pairs
from robopref.preferences.transfer import (
    DensePlan,
    GWConfig,
    LowRankPlan,
    PlanNotConverged,
    SourceBank,
    SourceLabels,
    TransferConfig,
    TransferError,
    TransferSource,
    dtw_costs,
    expected_calibration_error,
    intra_task_costs,
    rank_normalise,
    sharpen,
    solve_plan,
    transfer_labels,
)


def random_labels(n: int, count: int, seed: int = 0) -> SourceLabels:
    rng = np.random.default_rng(seed)
    first, second = rng.integers(0, n, count), rng.integers(0, n, count)
    keep = first != second
    return SourceLabels(n, first[keep], second[keep], rng.uniform(0, 1, keep.sum()),
                        np.ones(keep.sum()))


def test_identity_plan_reproduces_the_source_labels_exactly():
    n = 30
    labels = random_labels(n, 200)
    # Keep one label per unordered pair, so the transfer of a pair is that pair's label.
    seen, keep = set(), []
    for i, (a, b) in enumerate(zip(labels.first, labels.second, strict=True)):
        if (a, b) not in seen and (b, a) not in seen:
            seen.add((a, b))
            keep.append(i)
    labels = SourceLabels(n, labels.first[keep], labels.second[keep], labels.target[keep],
                          labels.weight[keep])
    plan = DensePlan(np.eye(n) / n)
    z = transfer_labels(plan, labels, labels.first, labels.second)
    np.testing.assert_allclose(z, labels.target, atol=1e-12)
    # Reversed order gives the complement.
    np.testing.assert_allclose(
        transfer_labels(plan, labels, labels.second, labels.first), 1 - labels.target, atol=1e-12
    )


def test_hand_computed_two_by_two_plan():
    # One labelled source pair: x0 preferred to x1. T = [[.4, .1], [.1, .4]].
    labels = SourceLabels(2, [0], [1], [1.0], [1.0])
    plan = DensePlan(np.array([[0.4, 0.1], [0.1, 0.4]]))
    # z(y0, y1) = (T00 T11 * 1 + T10 T01 * 0) / (T00 T11 + T10 T01) = .16 / .17
    z = transfer_labels(plan, labels, [0, 1], [1, 0])
    np.testing.assert_allclose(z, [0.16 / 0.17, 0.01 / 0.17])


def test_diffuse_plan_shrinks_labels_towards_one_half():
    # The PEARL critique: a uniform plan over 3 nodes with a single label gives 0.5 where
    # the identity plan gives 1; rank normalisation restores a spread of confidences.
    labels = SourceLabels(3, [0, 1], [1, 2], [1.0, 1.0], [1.0, 1.0])
    uniform = DensePlan(np.full((3, 3), 1 / 9))
    z = transfer_labels(uniform, labels, [0], [1])
    np.testing.assert_allclose(z, [0.5])
    np.testing.assert_allclose(transfer_labels(DensePlan(np.eye(3) / 3), labels, [0], [1]), [1])


def test_unreached_pairs_get_nan():
    labels = SourceLabels(4, [0], [1], [1.0], [1.0])
    z = transfer_labels(DensePlan(np.eye(4) / 4), labels, [2], [3])
    assert np.isnan(z).all()


def test_low_rank_plan_columns_equal_the_dense_product():
    rng = np.random.default_rng(0)
    q, r, g = rng.uniform(size=(7, 3)), rng.uniform(size=(5, 3)), rng.uniform(1, 2, 3)
    plan = LowRankPlan(q, r, g)
    np.testing.assert_allclose(plan.dense(), q @ np.diag(1 / g) @ r.T)
    labels = random_labels(7, 30)
    dense = DensePlan(plan.dense())
    np.testing.assert_allclose(
        transfer_labels(plan, labels, [0, 1, 2], [3, 4, 0]),
        transfer_labels(dense, labels, [0, 1, 2], [3, 4, 0]),
    )


def clustered_points(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [4, 0], [0, 9]], dtype=float)  # distinct inter-cluster gaps
    return centres[np.arange(n) % 3] + 0.3 * rng.normal(size=(n, 2))


def costs_of(x):
    from robopref.preferences.transfer.representations import euclidean_costs, normalised

    return normalised(euclidean_costs(x), "test")


@pytest.mark.parametrize("solver", ["entropic", "exact"])
def test_transfer_is_invariant_to_permuting_either_set(solver):
    xs, xt = clustered_points(24, 0), clustered_points(24, 1) @ np.array([[0, 1], [-1, 0]])
    labels = random_labels(24, 150)
    config = GWConfig(solver=solver, epsilon=0.02)
    first, second = np.arange(24), np.roll(np.arange(24), 5)
    z = transfer_labels(solve_plan(costs_of(xs), costs_of(xt), config), labels, first, second)

    perm_t = np.random.default_rng(3).permutation(24)
    inv_t = np.argsort(perm_t)  # new index of old node i
    plan_t = solve_plan(costs_of(xs), costs_of(xt[perm_t]), config)
    np.testing.assert_allclose(transfer_labels(plan_t, labels, inv_t[first], inv_t[second]), z,
                               atol=1e-4)

    perm_s = np.random.default_rng(4).permutation(24)
    inv_s = np.argsort(perm_s)
    labels_s = SourceLabels(24, inv_s[labels.first], inv_s[labels.second], labels.target,
                            labels.weight)
    plan_s = solve_plan(costs_of(xs[perm_s]), costs_of(xt), config)
    np.testing.assert_allclose(transfer_labels(plan_s, labels_s, first, second), z, atol=1e-4)


def test_solvers_agree_on_an_isometric_copy():
    """The target is the source rotated and relabelled: every solver finds the clusters, so
    the transferred labels of a cluster-ordered preference agree with the source's."""
    xs = clustered_points(30, 0)
    perm = np.random.default_rng(5).permutation(30)
    xt = (xs @ np.array([[0.6, -0.8], [0.8, 0.6]]))[perm]
    cluster = np.arange(30) % 3
    # Source preference: cluster 0 > 1 > 2 (a cluster-level reward).
    k, m = np.meshgrid(np.arange(30), np.arange(30), indexing="ij")
    k, m = k.ravel(), m.ravel()
    keep = cluster[k] != cluster[m]
    labels = SourceLabels(30, k[keep], m[keep], (cluster[k] < cluster[m])[keep].astype(float),
                          np.ones(keep.sum()))
    tc = cluster[perm]
    i, j = np.meshgrid(np.arange(30), np.arange(30), indexing="ij")
    i, j = i.ravel(), j.ravel()
    sel = tc[i] != tc[j]
    truth = (tc[i] < tc[j])[sel]
    for solver in ["exact", "entropic"]:
        plan = solve_plan(costs_of(xs), costs_of(xt), GWConfig(solver=solver, epsilon=0.01))
        z = transfer_labels(plan, labels, i[sel], j[sel])
        assert np.mean((z > 0.5) == truth) > 0.95, solver


def test_calibration_maps():
    z = np.array([0.5, 0.6, 0.9, 0.2, np.nan])
    np.testing.assert_allclose(sharpen(z[:4], 1.0), z[:4])
    assert np.isnan(sharpen(z, 3.0)[-1])
    assert abs(sharpen(np.array([0.6]), 4.0)[0] - 0.5) > 0.1
    ranked = rank_normalise(z)
    assert np.isnan(ranked[-1])
    assert np.all(np.sign(ranked[:4] - 0.5) == np.sign(z[:4] - 0.5))
    conf = np.abs(ranked[:4] - 0.5)
    assert list(np.argsort(conf)) == list(np.argsort(np.abs(z[:4] - 0.5)))


def test_expected_calibration_error():
    truth = np.array([1.0, 0.0, 1.0, 0.0])
    assert expected_calibration_error(np.array([1.0, 0.0, 1.0, 0.0]), truth) == 0
    assert expected_calibration_error(np.array([0.0, 1.0, 0.0, 1.0]), truth) == pytest.approx(1)
    # 75% confident and right 3 times out of 4: calibrated.
    assert expected_calibration_error(np.array([0.75, 0.25, 0.75, 0.75]), truth) == pytest.approx(0)


def test_dtw_of_a_time_shift_is_smaller_than_of_a_different_shape():
    t = np.linspace(0, 1, 20)
    base = np.sin(6 * t)
    seq = np.stack([
        np.stack([base, t], 1),
        np.stack([np.roll(base, 2), t], 1),
        np.stack([-base, t], 1),
    ])
    costs = dtw_costs(seq, points=20)
    assert costs[0, 1] < costs[0, 2]
    np.testing.assert_allclose(np.diag(costs), 0, atol=1e-5)
    np.testing.assert_allclose(costs, costs.T)


# --- the transfer source -----------------------------------------------------------------


def reward_of_feature(dim: int):
    return lambda obs, act: 10.0 / (1.0 + np.exp(-3.0 * obs[:, dim]))


def structured_episodes(count, obs_dim, seed, dataset_id="test"):
    """Episodes whose feature 0 drifts from a per-episode level (the reward grows with it);
    the other features are constant: the structure GW can match across tasks."""
    from robopref.data import Episode

    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(count):
        obs = np.zeros((40, obs_dim))
        # A skewed level distribution: a 1-D structure is otherwise GW-symmetric (a flip).
        obs[:, 0] += 4 * rng.uniform() ** 3 - 2 + np.cumsum(rng.normal(0, 0.1, 40))
        episodes.append(Episode(obs, rng.normal(size=(40, 2)), reward_of_feature(0)(obs, None),
                                np.zeros(40, bool)))
    return named(*episodes, dataset_id=dataset_id)


def source_bank(obs_dim=3, seed=0) -> SourceBank:
    episodes = structured_episodes(30, obs_dim, 100 + seed, "source")
    pairs = sample_pairs(episodes, 10, 400, np.random.default_rng(seed))
    prefs = [p for p in ScriptedTeacher().label(pairs, episodes) if p is not None]
    return SourceBank(prefs, episodes, max_nodes=300)


class TestTransferSourceContract(PreferenceSourceContract):
    @pytest.fixture(params=["plain", "sharpen", "rank", "anchors"])
    def make_source(self, request):
        bank = source_bank()
        if request.param == "anchors":
            config = TransferConfig(target_nodes=60, gw={"solver": "anchors", "anchors": 20,
                                                                "epsilon": 0.05})
        else:
            config = TransferConfig(calibration=request.param, target_nodes=60)
        return lambda: TransferSource(config, bank=bank)


def test_registered_and_built_from_a_config_group():
    config, cls = PREFERENCE_SOURCES.from_group(
        {"name": "transfer", "gw": {"solver": "exact"}}, "teacher", seed=3
    )
    assert cls is TransferSource and config.gw_config.solver == "exact" and config.seed == 3


def test_mismatched_observation_spaces_are_allowed():
    bank = source_bank(obs_dim=3)
    target = named(*[make_episode(40, obs_dim=6, act_dim=4, seed=s) for s in range(4)])
    pairs = sample_pairs(target, 10, 20, np.random.default_rng(0))
    out = TransferSource(TransferConfig(target_nodes=40), bank=bank).label(pairs, target)
    assert len(out) == 20 and any(p is not None for p in out)


def test_bad_inputs_fail_with_one_line_naming_the_fix():
    with pytest.raises(ConfigError, match="no labelled pairs"):
        SourceBank([], {})
    bank = source_bank()
    with pytest.raises(TransferError, match="target set is empty"):
        TransferSource(TransferConfig(), bank=bank).label(
            sample_pairs(named(make_episode(20, obs_dim=3)), 5, 2, np.random.default_rng(0)), {}
        )
    with pytest.raises(ConfigError, match="source_run"):
        TransferSource(TransferConfig())
    with pytest.raises(ConfigError, match="unknown GW solver"):
        TransferConfig(gw={"solver": "magic"})
    bad = np.ones((3, 3))
    bad[0, 1] = np.nan
    with pytest.raises(TransferError, match="NaN"):
        from robopref.preferences.transfer.representations import normalised

        normalised(bad, "target")
    with pytest.raises(TransferError, match="no segments"):
        intra_task_costs("pooled", np.zeros((0, 5, 3)), np.zeros((0, 5, 2)), "target")


def test_a_plan_that_did_not_converge_is_reported():
    xs, xt = clustered_points(20, 0), clustered_points(20, 1)
    with pytest.raises(PlanNotConverged, match="did not converge"):
        solve_plan(costs_of(xs), costs_of(xt),
                   GWConfig(solver="entropic", max_iter=1, sinkhorn_iter=1, marginal_tol=1e-9))


def test_transfer_between_tasks_with_one_structure_beats_chance():
    """Source and target rank segments by the same latent feature (observation spaces of
    different sizes): transferred labels agree with the target's teacher well above chance."""
    bank = source_bank(obs_dim=3)
    target = structured_episodes(30, 5, 200)
    pairs = sample_pairs(target, 10, 300, np.random.default_rng(7))
    source = TransferSource(TransferConfig(target_nodes=200, calibration="plain"), bank=bank)
    z = source.soft_labels(pairs, target)
    truth = np.array([a.rewards(target).sum() - b.rewards(target).sum() for a, b in pairs])
    accuracy = np.mean((z > 0.5) == (truth > 0))
    assert accuracy > 0.8, accuracy


def test_learned_representation_uses_a_reward_models_hidden_features():
    from test_gaussian_reward import gaussian

    bank = source_bank(obs_dim=5)  # the test model takes 5-d observations
    model = gaussian()
    target = structured_episodes(6, 5, 300)
    pairs = sample_pairs(target, 10, 10, np.random.default_rng(0))
    source = TransferSource(TransferConfig(representation="learned", target_nodes=30),
                            bank=bank, reward_model=model)
    assert len(source.label(pairs, target)) == 10
    other = structured_episodes(4, 3, 301)
    with pytest.raises(TransferError, match="observation spaces match"):
        source.label(sample_pairs(other, 10, 3, np.random.default_rng(0)), other)


@pytest.mark.parametrize("solver", ["fused", "entropic_fused"])
def test_fused_gw_needs_matching_spaces_and_answers_with_them(solver):
    bank = source_bank(obs_dim=3)
    config = TransferConfig(target_nodes=40, gw={"solver": solver})
    same = structured_episodes(6, 3, 400)
    pairs = sample_pairs(same, 10, 10, np.random.default_rng(0))
    assert any(p is not None for p in TransferSource(config, bank=bank).label(pairs, same))
    other = structured_episodes(6, 4, 401)
    with pytest.raises(TransferError, match="features of one size"):
        TransferSource(config, bank=bank).label(
            sample_pairs(other, 10, 3, np.random.default_rng(0)), other
        )


def test_the_cross_task_cost_tells_a_mirror_image_from_the_original():
    """Points on a line and their mirror image have the same intra-task costs, so plain GW
    gives both the same plan and gets one of them backwards; fused GW's cross-task cost
    follows the features (here: larger feature preferred on both sides) in both."""
    from robopref.preferences.transfer.representations import cross_costs

    x = np.linspace(0.0, 1.0, 40)[:, None]
    labels = SourceLabels(40, np.arange(39), np.arange(1, 40), np.zeros(39), np.ones(39))
    first, second = np.arange(39), np.arange(1, 40)
    plain_correct = []
    for target in (x, 1.0 - x):
        truth = (target[first, 0] > target[second, 0]).astype(float)
        np.testing.assert_allclose(costs_of(target), costs_of(x), atol=1e-5)
        # The same (float32-rounded) matrix for both, as the two sets' geometry is one.
        plain = solve_plan(costs_of(x), costs_of(x), GWConfig(solver="entropic", epsilon=0.01))
        z = transfer_labels(plain, labels, first, second)
        plain_correct.append(np.mean((z > 0.5) == truth))
        fused = solve_plan(costs_of(x), costs_of(x),
                           GWConfig(solver="entropic_fused", epsilon=0.01),
                           cross_costs(x, target))
        z = transfer_labels(fused, labels, first, second)
        assert np.mean((z > 0.5) == truth) > 0.95
    assert min(plain_correct) < 0.05  # one plan for both: one of them is read backwards


def test_label_scores_by_hand():
    from robopref.preferences.transfer.evaluation import label_scores

    truth = np.array([1.0, 0.0, 1.0, 0.0, 0.5])  # the tie is left out
    z = np.array([0.9, 0.6, np.nan, 0.2, 0.7])
    s = label_scores(z, truth)
    assert s["pairs"] == 4 and s["coverage"] == 0.75
    assert s["accuracy"] == pytest.approx((1 + 0 + 0.5 + 1) / 4)  # no answer = coin flip
    assert s["answered_accuracy"] == pytest.approx(2 / 3)
    assert s["top_half_accuracy"] == 1.0  # 0.9 and 0.2 are the most confident, both right
    assert s["ece"] == pytest.approx(expected_calibration_error(z, truth))


def test_random_plan_is_a_coupling_that_carries_no_labels():
    from robopref.preferences.transfer.evaluation import label_scores, random_plan

    plan = random_plan(30, 50, np.random.default_rng(0))
    np.testing.assert_allclose(plan.dense().sum(1), 1 / 30, rtol=1e-6)
    np.testing.assert_allclose(plan.dense().sum(0), 1 / 50, rtol=1e-4)
    labels = random_labels(30, 400)
    rng = np.random.default_rng(1)
    first, second = rng.integers(0, 50, 2000), rng.integers(0, 50, 2000)
    truth = rng.integers(0, 2, 2000).astype(float)
    z = transfer_labels(plan, labels, first, second)
    assert abs(label_scores(z, truth)["accuracy"] - 0.5) < 0.05


def test_reward_rows_with_perfect_transferred_labels_match_oracle_ones():
    """Transferred labels equal to the oracle's: the subset-plus-transfer reward scores like
    the all-oracle one."""
    from test_rewards import ensemble

    from robopref.preferences.transfer.evaluation import oracle_truth, reward_rows

    episodes = structured_episodes(40, 5, 500)  # the test models take 5-d observations
    train = sample_pairs(episodes, 10, 200, np.random.default_rng(0))
    heldout = sample_pairs(episodes, 10, 200, np.random.default_rng(1))
    truth = oracle_truth(train, episodes)

    def make(name, seed):
        if name == "gaussian":
            from test_gaussian_reward import gaussian

            return gaussian(steps=150, seed=seed)
        return ensemble(seed=seed, steps=150)

    rows = reward_rows(make, train, truth, heldout, episodes, 0.1, 0.2, [0, 1])
    assert rows["oracle_subset_plus_transfer"] == pytest.approx(rows["oracle_all"], abs=0.03)
    assert rows["transfer_only"] == pytest.approx(rows["oracle_all"], abs=0.03)
    assert len(rows["gaussian_minus_bt"]) == 2


def test_anchor_plan_transfer_is_the_dense_sum_factorised():
    """Labels moved cell to cell equal the weighted sum over the anchor plan's full matrix."""
    from robopref.preferences.transfer.plans import AnchorPlan

    rng = np.random.default_rng(0)
    cell_plan = rng.random((4, 3))
    plan = AnchorPlan(cell_plan / cell_plan.sum(), rng.integers(0, 4, 30), rng.integers(0, 3, 25))
    labels = random_labels(30, 200)
    first, second = rng.integers(0, 25, 100), rng.integers(0, 25, 100)
    np.testing.assert_allclose(transfer_labels(plan, labels, first, second),
                               transfer_labels(DensePlan(plan.dense()), labels, first, second),
                               atol=1e-12)


def test_anchor_solver_without_clustering_is_entropic_gw():
    xs, xt = clustered_points(30, 0), clustered_points(30, 1)
    fs, ft = xs.astype(np.float32), xt.astype(np.float32)
    entropic = solve_plan(costs_of(xs), costs_of(xt), GWConfig(solver="entropic", epsilon=0.02))
    anchors = solve_plan(None, None, GWConfig(solver="anchors", epsilon=0.02, anchors=30),
                         source_features=fs, target_features=ft)
    np.testing.assert_allclose(anchors.dense(), entropic.dense(), atol=1e-6)


def test_anchor_solver_clusters_large_sets_and_keeps_uniform_marginals():
    from robopref.preferences.transfer.plans import kmeans

    x = clustered_points(600, 3).astype(np.float32)
    cells, centroids = kmeans(x, 3, 20, seed=0)
    assert len(centroids) == 3
    for c in range(3):  # each cell is one of the three blobs
        assert len(set((np.arange(600) % 3)[cells == c])) == 1
    plan = solve_plan(None, None, GWConfig(solver="anchors", epsilon=0.02, anchors=30),
                      source_features=x, target_features=clustered_points(900, 4))
    assert plan.shape == (600, 900) and plan.info["anchors"] == [30, 30]
    row, col = plan.marginals()
    np.testing.assert_allclose(row, 1 / 600, rtol=1e-2)
    np.testing.assert_allclose(col, 1 / 900, rtol=1e-2)


def test_feature_solvers_refuse_dtw():
    bank = source_bank()
    config = TransferConfig(representation="dtw", target_nodes=30, gw={"solver": "anchors"})
    target = structured_episodes(6, 3, 600)
    with pytest.raises(TransferError, match="no features"):
        TransferSource(config, bank=bank).label(
            sample_pairs(target, 10, 5, np.random.default_rng(0)), target)


def test_source_bank_keeps_whole_labelled_pairs_under_its_node_budget():
    """Sparse labels (about one pair per segment): subsampling keeps pairs, not random
    nodes, so most of the budget still carries labels."""
    episodes = structured_episodes(30, 3, 700, "source")
    pairs = sample_pairs(episodes, 10, 300, np.random.default_rng(0))
    prefs = [p for p in ScriptedTeacher().label(pairs, episodes) if p is not None]
    bank = SourceBank(prefs, episodes, max_nodes=100)
    assert bank.labels.n <= 100
    assert len(bank.labels.first) >= 45  # random nodes would keep about 300 / 36 = 8
