"""ProbCover (rayal.selection.probcover) on hand-made point sets."""
from __future__ import annotations

import numpy as np
import pytest

from rayal.selection import LABELED, Budget, PoolView, ScoreTables, get_strategy
from rayal.selection.probcover import ball_graph, max_coverage, pure_radius

from tests.selection.test_typiclust import blobs, embeddings


def select(ids, vecs, budget, pool=None, seed=0, **params):
    tables = ScoreTables(embeddings=embeddings(ids, vecs))
    strategy = get_strategy("probcover", **params)
    return strategy.select(tables, pool or PoolView.fresh(ids), Budget(units=budget), seed=seed)


def test_pure_radius_is_the_quantile_of_the_distance_to_another_cluster():
    # two clusters on a line: the distance to the other cluster is 1.0, 0.9, 0.8 / 0.8, 0.9, 1.0
    x = np.array([[0.0], [0.1], [0.2], [1.0], [1.1], [1.2]])
    assert pure_radius(x, n_clusters=2, purity=0.95, seed=0) == pytest.approx(0.8 ** 2)   # squared
    # half the balls pure: the largest radius still below the distance of 4 of 6 points
    assert pure_radius(x, n_clusters=2, purity=0.5, seed=0) == pytest.approx(0.9 ** 2)


def test_the_greedy_takes_the_ball_covering_most_then_what_is_left():
    # a chain 0-1-2 and a separate pair 3-4 (edges: distance < 1.5)
    x = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    rows, gains = max_coverage(ball_graph(x, 1.5), np.zeros(5, bool), 3, seed=0)
    assert rows[0] == 1 and gains[0] == 3            # the middle of the chain covers 3
    assert rows[1] in (3, 4) and gains[1] == 2
    assert len(rows) == 2                            # nothing left to cover: it stops


def test_picks_the_blob_centres():
    ids, vecs = blobs()
    q = select(ids, vecs, 3, delta=0.2)
    assert sorted(q.frame_id) == ["c0", "c1", "c2"]
    assert list(q.score) == [9.0, 9.0, 9.0]


def test_a_labelled_ball_is_covered_already():
    ids, vecs = blobs()
    pool = PoolView.from_statuses(ids, {("c0", -1): LABELED})
    q = select(ids, vecs, 2, pool=pool, delta=0.2)
    assert sorted(q.frame_id) == ["c1", "c2"]


def test_full_coverage_fills_with_a_seeded_random_sample():
    ids, vecs = blobs()
    q = select(ids, vecs, 5, delta=2.5)      # one ball covers the sphere
    assert len(set(q.frame_id)) == 5 and q.extras["random_fill"] == 4
    assert list(q.reason[1:]) == ["covered: random fill"] * 4
    again = select(ids, vecs, 5, delta=2.5)
    assert list(again.frame_id) == list(q.frame_id)
    assert list(select(ids, vecs, 5, delta=2.5, seed=1).frame_id) != list(q.frame_id)


def test_delta_from_purity_picks_one_per_blob():
    ids, vecs = blobs()
    q = select(ids, vecs, 3, n_clusters=3)
    # delta reaches across a blob; at 95 % purity, 1 ball of 27 may reach into the next blob
    assert sorted(f[1] for f in q.frame_id) == ["0", "1", "2"] and q.score.sum() == 27
    assert 0.3 < q.extras["delta"] < 1.3


@pytest.mark.parametrize("params, name", [({"purity": 1.0}, "purity"), ({"n_clusters": 1}, "n_clusters"),
                                           ({"delta": 0.0}, "delta"), ({"unit": "pixel"}, "unit")])
def test_bad_parameters_are_refused_by_name(params, name):
    with pytest.raises(ValueError, match=name):
        get_strategy("probcover", **params)


def brute_force_delta2(x, label, purity):
    """The largest squared radius (among the squared pairwise distances) whose strict balls are
    pure for at least ``purity`` of the points."""
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    best = 0.0
    for r2 in np.unique(d2):
        pure = [(label[d2[i] < r2] == label[i]).all() for i in range(len(x))]
        if np.mean(pure) >= purity:
            best = r2
    return best


@pytest.mark.parametrize("purity", [0.5, 0.8, 0.9, 0.95])
def test_delta_is_the_largest_radius_of_that_purity_brute_force(purity, monkeypatch):
    import sklearn.cluster

    rng = np.random.default_rng(7)
    x = rng.normal(size=(20, 3))
    label = rng.integers(0, 3, 20)   # the pseudo-labels, fixed: the test checks the radius rule

    class Fixed:
        def __init__(self, **_):
            pass

        def fit_predict(self, _):
            return label
    monkeypatch.setattr(sklearn.cluster, "KMeans", Fixed)
    delta2 = pure_radius(x, n_clusters=3, purity=purity, seed=0)
    assert delta2 == pytest.approx(brute_force_delta2(x, label, purity), rel=1e-9)
    graph = ball_graph(x, delta2).toarray().astype(bool)   # the graph it builds is that pure
    assert np.mean([(label[row] == label[i]).all() for i, row in enumerate(graph)]) >= purity


def test_one_unit_and_identical_points_are_selected_not_refused():
    q = select(["a"], [[1.0, 0.0]], 1)
    assert list(q.frame_id) == ["a"]
    ids = [f"f{i}" for i in range(6)]
    q = select(ids, [[1.0, 0.0]] * 6, 2)          # one cluster: one ball holds every point
    assert q.score[0] == 6 and q.extras["random_fill"] == 1


def test_a_nan_embedding_is_refused_naming_the_frame():
    with pytest.raises(ValueError, match="frame b"):
        select(["a", "b", "c"], [[1.0, 0.0], [np.nan, 0.0], [0.0, 1.0]], 1)


def test_missing_embeddings_name_the_setting():
    with pytest.raises(ValueError, match=r"'embeddings' score table.*scoring\.embeddings"):
        get_strategy("probcover").select(ScoreTables(), PoolView.fresh(["a", "b"]), Budget(units=1), seed=0)
