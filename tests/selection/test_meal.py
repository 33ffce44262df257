"""MEAL / MEAL-FT: candidates, k-means++ D^2 seeding, UMAP fit placement and cache (tiny inputs)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from rayal.selection import (LABELED, QUARANTINED, QUEUED, Budget, PoolView, ScoreTables,
                             get_strategy, unit_keys)
from rayal.selection.meal import (MEAL, d2_step, kmeanspp_seeding, meal_benchmark, sample_pool_embeddings,
                                  synthetic_tables)

N_PATCHES, DIM, N_I, N = 60, 8, 20, 5


@pytest.fixture(scope="module")
def tiny():
    """60 patches (15 frames x 4) with clustered 8-d float16 embeddings and random entropy."""
    return synthetic_tables(N_PATCHES, DIM, seed=0, patches_per_frame=4, n_clusters=4)


def entropy_order(tables: ScoreTables, keep=None) -> list[tuple[str, int]]:
    """(frame_id, region_id) of patches by decreasing entropy (ties: table order)."""
    df = tables.regions.to_pandas()
    if keep is not None:
        df = df[[keep(f, r) for f, r in zip(df.frame_id, df.region_id)]]
    df = df.sort_values("entropy_mean", ascending=False, kind="stable")
    return list(zip(df.frame_id, df.region_id.astype(int)))


def picked(query) -> list[tuple[str, int]]:
    return list(zip(query.frame_id, query.region_id.astype(int)))


@pytest.mark.parametrize("name", ["meal", "meal_ft"])
def test_picks_distinct_top_candidates(tiny, name):
    tables, pool = tiny
    query = get_strategy(name, n_candidates=N_I).select(tables, pool, Budget(units=N), seed=0)
    order = entropy_order(tables)
    units = picked(query)
    assert len(units) == N and len(set(units)) == N
    assert set(units) <= set(order[:N_I])
    assert units[0] == order[0]  # first pick = the highest-entropy candidate
    assert query.cluster.tolist() == list(range(N))
    assert set(query.unit) == {"patch"}
    assert all(r.startswith(f"{name} entropy=") and "umap=(" in r for r in query.reason)
    assert query.extras["candidates"] == N_I
    assert query.extras["umap_fit_seconds"] >= 0.0


def test_deterministic_under_seed(tiny):
    tables, pool = tiny
    runs = [picked(MEAL(n_candidates=N_I).select(tables, pool, Budget(units=N), seed=7))
            for _ in range(2)]
    assert runs[0] == runs[1]
    ft = [picked(get_strategy("meal_ft", n_candidates=N_I).select(tables, pool, Budget(units=N), seed=7))
          for _ in range(2)]
    assert ft[0] == ft[1]


def test_never_selects_unselectable(tiny):
    tables, pool = tiny
    order = entropy_order(tables)
    frame_index = {f: i for i, f in enumerate(pool.frame_ids.to_pylist())}
    taken = order[:3]  # the three best patches are queued, labelled, quarantined
    whole = order[3][0]  # and the frame of the 4th best is labelled whole
    keys = unit_keys([frame_index[f] for f, _ in taken] + [frame_index[whole]],
                     [r for _, r in taken] + [-1])
    view = PoolView(frame_ids=pool.frame_ids, keys=keys,
                    status=np.array([QUEUED, LABELED, QUARANTINED, LABELED], np.int8),
                    dominant_class=np.full(4, -1, np.int16))
    allowed = entropy_order(tables, keep=lambda f, r: (f, r) not in taken and f != whole)
    for name in ("meal", "meal_ft"):
        query = get_strategy(name, n_candidates=N_I).select(tables, view, Budget(units=N), seed=1)
        units = picked(query)
        assert not set(units) & set(taken) and whole not in {f for f, _ in units}
        assert set(units) <= set(allowed[:N_I]) and units[0] == allowed[0]


def test_meal_fits_on_pool_meal_ft_on_candidates(tiny):
    tables, pool = tiny
    meal = get_strategy("meal", n_candidates=N_I)
    ft = get_strategy("meal_ft", n_candidates=N_I)
    q_meal = meal.select(tables, pool, Budget(units=N), seed=0)
    q_ft = ft.select(tables, pool, Budget(units=N), seed=0)
    assert q_meal.extras["umap_fit_on"] == "pool" and q_meal.extras["umap_fit_rows"] == N_PATCHES
    assert meal.reducer.embedding_.shape == (N_PATCHES, 2)
    assert q_ft.extras["umap_fit_on"] == "candidates" and q_ft.extras["umap_fit_rows"] == N_I
    assert ft.reducer is None  # MEAL-FT keeps no reducer between rounds


def test_meal_caches_reducer_by_table_and_seed(tiny):
    tables, pool = tiny
    meal = MEAL(n_candidates=N_I)
    first = meal.select(tables, pool, Budget(units=N), seed=0)
    reducer = meal.reducer
    again = meal.select(tables, pool, Budget(units=N), seed=0)
    assert again.extras["umap_reused"] and again.extras["umap_fit_seconds"] == 0.0
    assert meal.reducer is reducer and picked(again) == picked(first)
    meal.select(tables, pool, Budget(units=N), seed=1)  # another seed refits
    assert meal.reducer is not reducer
    reducer = meal.reducer
    copy = ScoreTables(regions=tables.regions, embeddings=tables.embeddings.slice(0))
    assert not meal.select(copy, pool, Budget(units=N), seed=1).extras["umap_reused"]
    assert meal.reducer is not reducer
    sampled = MEAL(n_candidates=N_I, umap_sample=25).select(tables, pool, Budget(units=N), seed=0)
    assert sampled.extras["umap_fit_rows"] == 25


def test_pool_sample_is_seeded_and_batch_independent(tiny):
    tables, _ = tiny
    frames = tables.regions.column("frame_id").unique().to_pylist()
    pool = PoolView.fresh(frames[:10])  # 40 of the 60 patches are in the pool
    x = tables.embeddings.column("embedding").combine_chunks().flatten().to_numpy().reshape(N_PATCHES, DIM)
    small = sample_pool_embeddings(tables, pool, "patch", 25, seed=3, batch_size=7)
    big = sample_pool_embeddings(tables, pool, "patch", 25, seed=3, batch_size=1000)
    assert small.shape == (25, DIM) and np.array_equal(small, big)
    rows = {tuple(r) for r in x[:40].astype(np.float32)}  # pool frames come first
    assert {tuple(r) for r in small} <= rows and len({tuple(r) for r in small}) == 25
    assert not np.array_equal(small, sample_pool_embeddings(tables, pool, "patch", 25, seed=4))
    assert len(sample_pool_embeddings(tables, pool, "patch", 1000, seed=3)) == 40


def test_parquet_tables_and_path_cache(tiny, tmp_path):
    tables, pool = tiny
    for name in ("regions", "embeddings"):
        (tmp_path / name).mkdir()
        pq.write_table(getattr(tables, name), tmp_path / name / "part-0.parquet", row_group_size=16)
    on_disk = ScoreTables.from_dir(str(tmp_path))
    meal = MEAL(n_candidates=N_I)
    from_disk = meal.select(on_disk, pool, Budget(units=N), seed=0)
    in_memory = MEAL(n_candidates=N_I).select(tables, pool, Budget(units=N), seed=0)
    assert picked(from_disk) == picked(in_memory)
    again = meal.select(ScoreTables.from_dir(str(tmp_path)), pool, Budget(units=N), seed=0)
    assert again.extras["umap_reused"]  # same path string -> same reducer


def test_manifold_fitted_once_on_the_initial_tables(tiny, tmp_path):
    """MEAL's Phi: fitted on ``manifold_from`` (round 0's features) with ``umap_seed``, whatever
    the round's tables and selection seed; each round only transforms its candidates."""
    tables, pool = tiny
    initial, _ = synthetic_tables(N_PATCHES, DIM, seed=7, patches_per_frame=4, n_clusters=4)
    for name in ("regions", "embeddings"):
        (tmp_path / name).mkdir()
        pq.write_table(getattr(initial, name), tmp_path / name / "part-0.parquet")
    x0 = sample_pool_embeddings(initial, pool, "patch", 10**6, seed=0)
    maps, reused = [], []
    for seed in (11, 12):   # two rounds, each with a new strategy instance: one fit, then reuse
        meal = MEAL(n_candidates=N_I, manifold_from=str(tmp_path), umap_seed=3)
        query = meal.select(tables, pool, Budget(units=N), seed=seed)
        assert query.extras["umap_fit_rows"] == N_PATCHES
        assert np.array_equal(np.asarray(meal.reducer._raw_data, np.float32), x0)   # the initial features
        maps.append(meal.reducer.embedding_)
        reused.append(query.extras["umap_reused"])
    assert np.allclose(maps[0], maps[1]) and reused == [False, True]   # one map for the whole run
    from rayal.selection.meal import fit_reducer
    refit = fit_reducer(x0, 3)     # the cached map is the seeded fit itself
    assert np.allclose(refit.embedding_, maps[0])
    default = MEAL(n_candidates=N_I)
    default.select(tables, pool, Budget(units=N), seed=11)
    assert not np.array_equal(np.asarray(default.reducer._raw_data, np.float32), x0)
    with pytest.raises(ValueError, match="manifold_from"):
        MEAL(manifold_from=3)


def test_fewer_candidates_than_budget_returns_all(tiny):
    tables, pool = tiny
    query = MEAL(n_candidates=3).select(tables, pool, Budget(units=N), seed=0)
    assert picked(query) == entropy_order(tables)[:3]
    assert query.extras["candidates"] == 3 and query.extras["umap_fit_rows"] == 0
    assert len(MEAL().select(tables, pool, Budget(units=0), seed=0)) == 0


def test_candidates_without_embedding_are_dropped(tiny):
    tables, pool = tiny
    best = entropy_order(tables)[:2]
    emb = tables.embeddings
    drop = np.array([(f, r) in best for f, r in zip(emb.column("frame_id").to_pylist(),
                                                    emb.column("region_id").to_pylist())])
    holed = ScoreTables(regions=tables.regions, embeddings=emb.filter(pa.array(~drop)))
    query = MEAL(n_candidates=N_I).select(holed, pool, Budget(units=N), seed=0)
    assert query.extras["missing_embeddings"] == 2 and query.extras["candidates"] == N_I - 2
    assert not set(picked(query)) & set(best)
    assert picked(query)[0] == entropy_order(tables)[2]
    no_patches = ScoreTables(regions=tables.regions,
                             embeddings=emb.filter(pc.equal(emb.column("unit"), "superpixel")))
    with pytest.raises(ValueError, match="embeddings"):
        MEAL(n_candidates=N_I).select(no_patches, pool, Budget(units=N), seed=0)


def test_d2_step_picks_far_outlier():
    points = np.vstack([np.random.default_rng(0).normal(0, 0.1, (10, 2)), [[100.0, 100.0]]])
    min_d2 = ((points - points[0]) ** 2).sum(axis=1)
    assert all(d2_step(min_d2, np.random.default_rng(s)) == 10 for s in range(50))
    for s in range(20):  # k-means++: first given, the outlier comes second
        assert kmeanspp_seeding(points, 2, np.random.default_rng(s), first=0).tolist() == [0, 10]


def test_d2_step_is_proportional_and_skips_zero_weight():
    rng = np.random.default_rng(0)
    draws = np.array([d2_step(np.array([0.0, 1.0, 3.0]), rng) for _ in range(4000)])
    assert not (draws == 0).any()
    assert abs((draws == 2).mean() - 0.75) < 0.03
    available = np.array([False, True, False, True])
    assert {d2_step(np.zeros(4), rng, available) for _ in range(50)} == {1, 3}


def test_kmeanspp_distinct_even_on_duplicates():
    same = np.zeros((6, 2))
    picks = kmeanspp_seeding(same, 6, np.random.default_rng(0), first=2)
    assert picks[0] == 2 and sorted(picks.tolist()) == list(range(6))
    assert len(kmeanspp_seeding(same, 10, np.random.default_rng(0))) == 6


def test_bad_parameters(tiny):
    for kwargs, field in (({"unit": "image"}, "unit"), ({"n_candidates": 0}, "n_candidates"),
                          ({"umap_sample": 0}, "umap_sample"), ({"n_neighbors": 1}, "n_neighbors"),
                          ({"fine_tune": "yes"}, "fine_tune")):
        with pytest.raises(ValueError, match=field):
            MEAL(**kwargs)
    tables, pool = tiny
    with pytest.raises(ValueError, match="units"):
        MEAL().select(tables, pool, Budget(cost=1.0), seed=0)


def test_benchmark_helper_runs_small():
    out = meal_benchmark(n_embeddings=300, dim=16, n_candidates=40, budget=8, warmup=False)
    assert out["selected"] == 8 and out["umap_fit_rows"] == 300
    assert out["total"] >= out["seconds_fit"] + out["seconds_transform"] + out["seconds_kmeanspp"]
