"""Suggestive Annotation (Yang et al. 2017): uncertainty, then representativeness.

1. Candidates S_c: the K = ceil(k_factor * B) most uncertain selectable units
   (score column, default ``entropy_mean``) among those with an embedding.
2. From S_c pick B units S_a greedily maximising the facility-location cover of
   the pool, ``F(S_a) = sum_{j in S_u} max_{i in S_a} max(cos(i, j), 0)``, where
   S_u is a seeded uniform sample (``sample_size``) of the selectable pool units
   with an embedding. Each step adds the candidate with the largest gain
   ``F(S_a + i) - F(S_a)``; ties go to the more uncertain candidate.

Cosines are clipped at 0 so F is monotone submodular (the greedy keeps its
(1 - 1/e) guarantee); the paper's 0/1 set-cover variant is this with a threshold.
Query.score is the cover gain at pick time. Deterministic for fixed inputs and seed.

Uncertainty source: the paper's is the disagreement of a committee of FCNs trained on bootstrap
samples (Sec. 3.2: the variance of their outputs). With ``committee`` >= 2 (the tables were
scored by a committee; ``rayal run`` / ``pool select`` pass ``train.committee.members`` in
``scoring.mode: committee``) and no explicit ``score``, the score is ``committee_score``
(default ``variance_mean``, mean over pixels of the members' variance); otherwise
``entropy_mean`` of the one model (MC-dropout mean or plain prediction). Every query reason
names the source: ``source=committee(K)`` or ``source=model``.
"""
from __future__ import annotations

import math

import numpy as np

from rayal.selection.base import Budget, PoolView, Query, ScoreTables, Strategy
from rayal.selection.common import (UNITS, check_choice, check_column, check_range, level_of,
                                    scored_rows, query_from_rows, rank_top, table_of, unit_budget)
from rayal.selection.embeddings import embedding_keys, read_embeddings
from rayal.selection.density import pool_sample_embeddings
from rayal.selection.registry import register_strategy


def max_cover(similarity: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy facility location: ``similarity`` (K candidates, S pool) >= 0 -> (picked rows, gains).

    Each of the ``min(n, K)`` steps costs one K x S pass; ties go to the lowest row.
    """
    k = similarity.shape[0]
    cover = np.zeros(similarity.shape[1], similarity.dtype)
    free = np.ones(k, bool)
    picked, gains = [], []
    for _ in range(min(n, k)):
        gain = np.maximum(similarity - cover, 0).sum(axis=1, dtype=np.float64)
        gain[~free] = -np.inf
        i = int(np.argmax(gain))
        picked.append(i)
        gains.append(gain[i])
        free[i] = False
        np.maximum(cover, similarity[i], out=cover)
    return np.asarray(picked, np.int64), np.asarray(gains, np.float64)


@register_strategy("suggestive", score=None, k_factor=2.0, sample_size=2000, unit="image",
                   committee=0, committee_score="variance_mean")
class SuggestiveAnnotation(Strategy):
    """Top-K uncertain, then greedy max-cover of a pool sample.

    score: uncertainty column of the frames or regions table per ``unit``; None: the source's
    default (``committee_score`` for a committee, else ``entropy_mean``).
    committee: members that scored the tables (0 or 1: one model).
    committee_score: the disagreement column used for a committee (needs its measure, e.g.
    ``variance``, in ``scoring.measures``; a missing column is a ValueError naming it).
    k_factor: K = ceil(k_factor * B) candidates (>= 1; the paper uses K = 2B).
    sample_size: pool units the cover is measured on.
    unit: ``"image"`` | ``"patch"`` | ``"superpixel"``.
    """

    needs_embeddings = True   # its score tables must hold this unit's embeddings

    def __init__(self, score: str | None = None, k_factor: float = 2.0, sample_size: int = 2000,
                 unit: str = "image", committee: int = 0, committee_score: str = "variance_mean"):
        check_range("committee", committee, 0, integer=True)
        check_column("committee_score", committee_score)
        self.committee = int(committee)
        self.source = f"committee({self.committee})" if self.committee >= 2 else "model"
        if score is None:
            score = committee_score if self.committee >= 2 else "entropy_mean"
        check_column("score", score)
        check_range("k_factor", k_factor, 1.0)
        check_range("sample_size", sample_size, 1, integer=True)
        check_choice("unit", unit, UNITS)
        self.score, self.k_factor, self.sample_size, self.unit = score, float(k_factor), sample_size, unit
        self.level = level_of(unit)

    def select(self, tables: ScoreTables, pool: PoolView, budget: Budget, seed: int) -> Query:
        n = unit_budget(budget, self)
        if n == 0:
            return Query.empty()
        if self.committee >= 2 and self.score not in tables.columns(table_of(self.unit)):
            raise ValueError(f"suggestive: committee score column {self.score!r} is not in the "
                             f"{table_of(self.unit)} table; add its measure to scoring.measures or set "
                             "selection.params.committee_score")
        rows, phi, usable = scored_rows(tables, self.unit, pool, self.score)
        with_embedding = np.isin(rows.keys, embedding_keys(tables, self.unit, pool))
        candidates = rank_top(rows, phi, math.ceil(self.k_factor * n), usable & with_embedding)
        extras = {"nan_skipped": int(np.count_nonzero(rows.selectable & np.isnan(phi))),
                  "no_embedding": int(np.count_nonzero(usable & ~with_embedding)),
                  "candidates": int(len(candidates))}
        if len(candidates) == 0:
            return query_from_rows(rows, candidates, np.zeros(0), [], extras=extras)
        x, _ = read_embeddings(tables, self.unit, pool, rows.keys[candidates])
        sample = pool_sample_embeddings(tables, self.unit, pool, self.sample_size, seed)
        extras["sample_size"] = int(len(sample))
        similarity = np.maximum(x @ sample.T, 0)  # (K, S)
        order, gains = max_cover(similarity, n)
        picked = candidates[order]
        reasons = [f"source={self.source} {self.score}={p:.3f} cover_gain={g:.2f}"
                   for p, g in zip(phi[picked], gains)]
        return query_from_rows(rows, picked, gains, reasons, extras=extras)
