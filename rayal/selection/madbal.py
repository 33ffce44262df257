"""MADBAL (papers/madbal.txt): cluster-budgeted selection of superpixels.

Scores. Each region row has a score ``u`` (column ``score_column``; by default
``maturity_score``, the mean over the superpixel of the multi-head pixel score
``(H(p) + sum_k W_k JS(p, p_k)) * exp(sigmoid(L))``). The multi-head model that produces it
comes later: while the regions table has no ``maturity_score`` column the strategy falls
back to ``entropy_mean`` (mean pixel entropy, nats) and says so in ``extras["score_column"]``.
Regions with a NaN (or null) score are skipped.

Clusters. k-means (``num_clusters``, default 9; sklearn ``KMeans``, fixed ``n_init``,
``random_state`` from the seed) is fitted on a seeded uniform sample of at most
``kmeans_sample`` embeddings (rows of the embeddings table of this unit, pooled encoder
features), and every selectable region is assigned to its nearest centre. Regions without an
embedding row are skipped and counted in ``extras["no_embedding"]``.

Per cluster k (over its selectable, embedded regions):
``P_k(c)`` = share of its regions whose dominant predicted class (``dominant_pred``) is c;
region score ``s = u * exp(-P_k(dominant_pred))``; cluster uncertainty ``u_k = sum s``
(``cluster_uncertainty="sum"``, default) or the paper's Eq. 7 mean (``"mean"``).
Budgets: :func:`cluster_budgets`. Within a cluster the regions of highest s are taken
(ties: frame_id, region_id ascending); the query lists all picks by s, highest first.

One-pixel annotation (``one_pixel=True``): every query row gets
``extras["annotation"] == "one_pixel"``: the annotator labels only the highest-scoring pixel of
each selected superpixel. The score tables hold no pixel maps, so that pixel's location is
resolved at annotation time from the pixel score map of the frame.

Scale (all streamed, never materialised): pass 0 samples embeddings (bottom-k of seeded
uniform priorities, so the sample does not depend on batch boundaries) and fits k-means;
pass 1 assigns selectable embedded regions to clusters (no second read when the sample already
holds every embedding row) and pass 2 reads the regions; both spill (unit key, ...) rows to
disk partitioned by frame index (:class:`rayal.selection.spill.BucketSpill`), and the two
sides are joined one bucket (~2M rows) at a time to accumulate per-(cluster, class) counts
and score sums, then again to keep an exact bounded top-b_k per cluster. Memory:
O(kmeans_sample x D + bucket + K x C + B + one batch) whatever the table size; disk:
~30 bytes per region in a temporary directory.
"""
from __future__ import annotations

import tempfile
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rayal.selection.base import (Budget, FrameLookup, PoolView, Query, ScoreTables, Strategy,
                                  split_keys, unit_keys)
from rayal.selection.oreal import (TopK, check_common, fixed_list_rows,
                                   selectable_rows, units_budget)
from rayal.selection.registry import register_strategy
from rayal.selection.spill import BucketSpill

DEFAULT_SCORE, FALLBACK_SCORE = "maturity_score", "entropy_mean"
ROWS_PER_BUCKET = 2_000_000  # rows joined in memory at a time


def cluster_budgets(u: np.ndarray, available: np.ndarray, budget: int) -> np.ndarray:
    """Per-cluster budgets that sum exactly to ``min(budget, available.sum())``.

    u: (K,) cluster uncertainties (NaN / negative count as 0; if all are 0 the clusters are
    weighted by ``available``); available: (K,) selectable units per cluster.
    1. ``b_k = ceil(u_k / sum u * B)`` (Eq. 8, B capped at the units available);
    2. trim to B: repeatedly take 1 from the currently largest budget (ties: lowest id);
    3. cap each b_k at ``available_k`` and hand the shortfall to clusters with spare units in
       decreasing u_k (ties: lowest id), each filled up to its spare before the next.
    Returns (K,) int64.
    """
    u = np.asarray(u, np.float64)
    available = np.asarray(available, np.int64)
    K = len(u)
    B = min(int(budget), int(available.sum()))
    if B <= 0 or K == 0:
        return np.zeros(K, np.int64)
    w = np.where(np.isfinite(u) & (u > 0) & (available > 0), u, 0.0)
    if w.sum() <= 0:
        w = available.astype(np.float64)
    share = w / w.sum() * B
    b = np.ceil(share * (1 - 1e-12)).astype(np.int64)  # a share within float error of an integer stays
    for _ in range(max(int(b.sum()) - B, 0)):
        b[int(np.argmax(b))] -= 1  # argmax: first (lowest id) of the largest
    b = np.minimum(b, available)
    short = B - int(b.sum())
    for k in np.lexsort((np.arange(K), -w)):
        if short <= 0:
            break
        add = min(short, int(available[k] - b[k]))
        b[k] += add
        short -= add
    return b


@register_strategy("madbal")
class MADBAL(Strategy):
    """MADBAL over the regions and embeddings tables of one unit kind.

    unit: ``"superpixel"`` (default) or ``"patch"``; num_clusters: K of k-means (default 9);
    score_column: regions column with the superpixel score (``maturity_score``, falling back to
    ``entropy_mean`` when that column is absent); one_pixel: one-pixel annotation (see module);
    kmeans_sample: most embeddings used to fit k-means; cluster_uncertainty: ``sum`` | ``mean``;
    n_init: k-means restarts; batch_size / embedding_batch_size: rows per streamed batch.
    """

    needs_embeddings = True   # its score tables must hold this unit's embeddings
    level = "region"
    units = "region"

    def __init__(self, unit: str = "superpixel", num_clusters: int = 9,
                 score_column: str = DEFAULT_SCORE, one_pixel: bool = False,
                 kmeans_sample: int = 100_000, cluster_uncertainty: str = "sum", n_init: int = 3,
                 batch_size: int = 1 << 20, embedding_batch_size: int = 16384):
        check_common(unit, batch_size)
        for name, value, low in (("num_clusters", num_clusters, 1), ("kmeans_sample", kmeans_sample, 1),
                                 ("n_init", n_init, 1), ("embedding_batch_size", embedding_batch_size, 1)):
            if int(value) < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if cluster_uncertainty not in ("sum", "mean"):
            raise ValueError(f"cluster_uncertainty must be 'sum' or 'mean', got {cluster_uncertainty!r}")
        self.unit, self.num_clusters, self.score_column = unit, int(num_clusters), score_column
        self.one_pixel, self.kmeans_sample = bool(one_pixel), int(kmeans_sample)
        self.cluster_uncertainty, self.n_init = cluster_uncertainty, int(n_init)
        self.batch_size, self.embedding_batch_size = int(batch_size), int(embedding_batch_size)

    def _resolve_score(self, tables: ScoreTables) -> str:
        names = tables.columns("regions")
        if self.score_column in names:
            return self.score_column
        if self.score_column == DEFAULT_SCORE and FALLBACK_SCORE in names:
            return FALLBACK_SCORE
        raise ValueError(f"madbal: regions table has no score column {self.score_column!r}")

    def _embeddings(self, tables: ScoreTables, columns: list[str]):
        if tables.embeddings is None:
            return
        yield from tables.iter_batches("embeddings", columns=columns,
                                       filter=pc.field("unit") == self.unit,
                                       batch_size=self.embedding_batch_size)

    def _sample(self, tables: ScoreTables, seed: int):
        """Bottom-``kmeans_sample`` of uniform priorities (one draw per row, in table order).
        -> (X (S, D) float32, frame_id (S,) object, region_id (S,), complete: sample == all rows)."""
        rng = np.random.default_rng(seed)
        S = self.kmeans_sample
        pri, emb, fid, rid = np.zeros(0), None, np.zeros(0, object), np.zeros(0, np.int64)
        seen = 0
        for batch in self._embeddings(tables, ["frame_id", "region_id", "embedding"]):
            p = rng.random(batch.num_rows)
            col, region = batch.column("embedding"), batch.column("region_id")
            valid = (col.is_valid().to_numpy(zero_copy_only=False)
                     & region.is_valid().to_numpy(zero_copy_only=False))
            seen += int(valid.sum())
            take = valid & (p < pri.max()) if len(pri) == S else valid
            if not take.any():
                continue
            rows = fixed_list_rows(col, take)
            emb = rows if emb is None else np.concatenate([emb, rows])
            pri = np.concatenate([pri, p[take]])
            mask = pa.array(take)
            fid = np.concatenate([fid, batch.column("frame_id").filter(mask)
                                  .cast(pa.string()).to_numpy(zero_copy_only=False)])
            rid = np.concatenate([rid, region.filter(mask).to_numpy(zero_copy_only=False)])
            if len(pri) > S:
                keep = np.argpartition(pri, S - 1)[:S]
                pri, emb, fid, rid = pri[keep], emb[keep], fid[keep], rid[keep]
        order = np.argsort(pri, kind="stable")
        X = emb[order].astype(np.float32) if emb is not None else np.zeros((0, 0), np.float32)
        return X, fid[order], rid[order].astype(np.int64), seen <= S

    def _clusters(self, tables: ScoreTables, pool: PoolView, lookup: FrameLookup, seed: int,
                  spill: BucketSpill) -> int:
        """Fit k-means on the sample and spill (unit key, cluster) of every selectable embedded
        region into ``spill``. -> K, the effective number of clusters."""
        from sklearn.cluster import KMeans
        from sklearn.exceptions import ConvergenceWarning

        X, fid, rid, complete = self._sample(tables, seed)
        if len(X) == 0:
            return 0
        K = min(self.num_clusters, len(X))
        with warnings.catch_warnings():  # duplicate points: fewer distinct points than K
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = KMeans(n_clusters=K, n_init=self.n_init, random_state=seed).fit(X)
        if complete:
            fi = lookup.index(pa.array(fid, pa.string()))
            ok = fi >= 0
            ok[ok] = pool.selectable(fi[ok], rid[ok])
            spill.append(fi[ok] % spill.num_buckets, key=unit_keys(fi[ok], rid[ok]),
                         label=model.labels_[ok])
            return K
        for batch in self._embeddings(tables, ["frame_id", "region_id", "embedding"]):
            fi, region_id, ok = selectable_rows(pool, lookup, batch)
            col = batch.column("embedding")
            if col.null_count:
                ok &= col.is_valid().to_numpy(zero_copy_only=False)
            if ok.any():
                X = fixed_list_rows(col, ok).astype(np.float32)
                spill.append(fi[ok] % spill.num_buckets, key=unit_keys(fi[ok], region_id[ok]),
                             label=model.predict(X))
        return K

    def _spill_regions(self, tables: ScoreTables, pool: PoolView, lookup: FrameLookup, score: str,
                       spill: BucketSpill) -> None:
        """Spill (unit key, u, dominant class + 1) of every selectable region into ``spill``."""
        columns = ["frame_id", "region_id", score, "dominant_pred"]
        for batch in tables.iter_batches("regions", columns=columns,
                                         filter=pc.field("unit") == self.unit,
                                         batch_size=self.batch_size):
            fi, rid, ok = selectable_rows(pool, lookup, batch)
            if not ok.any():
                continue
            u = pc.fill_null(batch.column(score), np.nan).to_numpy(zero_copy_only=False)
            dom = pc.fill_null(batch.column("dominant_pred"), -1).to_numpy(zero_copy_only=False)
            dom = np.maximum(np.asarray(dom, np.int64), -1) + 1  # 0 = unknown class
            spill.append(fi[ok] % spill.num_buckets, key=unit_keys(fi[ok], rid[ok]),
                         u=np.asarray(u, np.float64)[ok], dom=dom[ok])

    @staticmethod
    def _joined(clusters: BucketSpill, regions: BucketSpill, missing: list[int]):
        """Join the two spills bucket by bucket -> (cluster, frame_index, region_id, u, class + 1)
        for embedded regions with a score; ``missing[0]`` counts regions without an embedding."""
        for b in range(clusters.num_buckets):
            emb, reg = clusters.read(b), regions.read(b)
            keys, first = np.unique(emb["key"], return_index=True)  # a unit embedded twice: once
            labels = emb["label"][first]
            pos = np.minimum(np.searchsorted(keys, reg["key"]), max(len(keys) - 1, 0))
            found = keys[pos] == reg["key"] if len(keys) else np.zeros(len(reg["key"]), bool)
            missing[0] += int((~found).sum())
            real = found & ~np.isnan(reg["u"])  # a region without a score is skipped
            fi, rid = split_keys(reg["key"][real])
            yield labels[pos[real]], fi, rid, reg["u"][real], reg["dom"][real]

    def _num_buckets(self, tables: ScoreTables) -> int:
        rows = tables.num_rows("regions")
        return max(1, -(-rows // ROWS_PER_BUCKET))

    def select(self, tables: ScoreTables, pool: PoolView, budget: Budget, seed: int) -> Query:
        """Same inputs and seed -> same query. extras: score_column, no_embedding,
        num_clusters (effective K), cluster_uncertainty (u_k), cluster_budgets (b_k),
        and annotation="one_pixel" when one_pixel."""
        B = units_budget(budget, "madbal")
        score = self._resolve_score(tables)
        extras: dict = {"score_column": score}
        if self.one_pixel:
            extras["annotation"] = "one_pixel"
        if B == 0:
            q = Query.empty()
            q.extras.update(extras)
            return q
        seed = int(seed) % (1 << 32)
        lookup = pool.lookup
        with tempfile.TemporaryDirectory(prefix="rayal-madbal-") as tmp:
            P = self._num_buckets(tables)
            clusters = BucketSpill(tmp, "clusters", P, {"key": np.int64, "label": np.int32})
            regions = BucketSpill(tmp, "regions", P, {"key": np.int64, "u": np.float64,
                                                      "dom": np.int64})
            K = self._clusters(tables, pool, lookup, seed, clusters)
            self._spill_regions(tables, pool, lookup, score, regions)
            clusters.close()
            regions.close()
            missing = [0]
            counts = np.zeros((K, 1), np.int64)  # (K, C + 1): regions per (cluster, class + 1)
            sums = np.zeros((K, 1), np.float64)  # (K, C + 1): sum of u per (cluster, class + 1)
            for cl, _, _, u, dom in self._joined(clusters, regions, missing):
                width = max(counts.shape[1], int(dom.max(initial=0)) + 1)
                if width > counts.shape[1]:
                    pad = ((0, 0), (0, width - counts.shape[1]))
                    counts, sums = np.pad(counts, pad), np.pad(sums, pad)
                flat = cl.astype(np.int64) * width + dom
                counts += np.bincount(flat, minlength=K * width).reshape(K, width)
                sums += np.bincount(flat, weights=u, minlength=K * width).reshape(K, width)
            available = counts.sum(axis=1)
            share = counts / np.maximum(available, 1)[:, None]  # P_k(c)
            weight = np.exp(-share)  # s = u * exp(-P_k(dominant_pred))
            u_k = (sums * weight).sum(axis=1)
            if self.cluster_uncertainty == "mean":
                u_k = u_k / np.maximum(available, 1)
            b = cluster_budgets(u_k, available, B)
            extras.update(no_embedding=missing[0], num_clusters=K,
                          cluster_uncertainty=u_k.tolist(), cluster_budgets=b.tolist(),
                          spill_buckets=P)
            tops = [TopK(b_k, lookup.rank) for b_k in b]
            if b.sum() > 0:
                for cl, fi, rid, u, dom in self._joined(clusters, regions, [0]):
                    s = u * weight[cl, dom]
                    for k in np.flatnonzero(b):
                        m = cl == k
                        if m.any():
                            tops[k].push(s[m], fi[m], rid[m])
        return self._query(pool, lookup, tops, extras)

    def _query(self, pool: PoolView, lookup: FrameLookup, tops: list[TopK], extras: dict) -> Query:
        cluster = np.concatenate([np.full(len(t.score), k, np.int32) for k, t in enumerate(tops)]
                                 + [np.zeros(0, np.int32)])
        s = np.concatenate([t.score for t in tops] + [np.zeros(0)])
        fi = np.concatenate([t.frame_index for t in tops] + [np.zeros(0, np.int64)])
        rid = np.concatenate([t.region_id for t in tops] + [np.zeros(0, np.int64)])
        order = np.lexsort((rid, lookup.rank[fi], -s))
        cluster, s, fi, rid = cluster[order], s[order], fi[order], rid[order]
        frame_id = pool.frame_ids.take(pa.array(fi, pa.int64())).to_numpy(zero_copy_only=False)
        reason = np.array([f"madbal cluster={k} s={v:.4g}" for k, v in zip(cluster, s)], dtype=object)
        return Query(frame_id=np.asarray(frame_id, dtype=object),
                     unit=np.full(len(fi), self.unit, dtype=object), region_id=rid.astype(np.int32),
                     score=s, reason=reason, cluster=cluster, extras=extras)
