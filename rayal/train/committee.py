"""Committee training pieces: bootstrap resamples, member seeds and directories, the manifest.

A committee (``train.committee``, query by committee; Suggestive Annotation's four FCNs on
bootstrap samples, Yang et al. 2017, Sec. 3.2) is K models trained on the same round. Member k:

- trains with seed ``config.seed + k * seed_offset`` (weights init, batch order, augmentation);
- trains on a bootstrap resample of the labelled units (``bootstrap: true``; member 0 on all of
  them when ``lead_on_all``), drawn with ``numpy.random.default_rng([seed, k])``;
- warm-starts from the previous round's member k (``train.warm_start``);
- keeps its checkpoints in ``<train_dir>/member_<kk>/`` (``best.pt``, ``last.pt``,
  ``loop_state.json``): a finished member is kept on resume, an unfinished one resumes from its
  ``last.pt``, a missing one trains.

When every member is done, ``<train_dir>/committee.json`` (``{"members": [best.pt URIs]}``) is
written: this manifest is the round's checkpoint in ``rounds.parquet`` and the
``model.checkpoint`` the scoring actors load for ``scoring.mode: committee``. Consumers that
need one model (evaluation, pseudo-labels, one-pixel annotation) take the lead member through
:func:`lead_checkpoint`. The Ray scheduling lives in :mod:`rayal.pipeline.loop.committee_job`.
"""
from __future__ import annotations

import json
import os

import numpy as np

from rayal.config.sections import RayalConfig
from rayal.config.training import TrainConfig
from rayal.data import exists, join_uri
from rayal.train.dataset import LabelSpec

MANIFEST = "committee.json"

__all__ = ["MANIFEST", "bootstrap_specs", "is_manifest", "lead_checkpoint", "member_config",
           "member_dir", "member_init", "member_progress", "member_seed", "member_specs", "read_manifest",
           "training_cpus", "write_manifest"]


def member_seed(seed: int, k: int, seed_offset: int) -> int:
    """Seed of member ``k``: ``seed + k * seed_offset``."""
    return int(seed) + int(k) * int(seed_offset)


def member_dir(train_dir: str, k: int) -> str:
    return join_uri(os.fspath(train_dir), f"member_{k:02d}")


def bootstrap_specs(specs: list[LabelSpec], seed: int, k: int) -> list[LabelSpec]:
    """A bootstrap resample of the labelled *units* in ``specs``: N draws with replacement from
    the N units (a whole-frame or point spec is one unit, a region spec one unit per region),
    seeded by ``(seed, k)``. A unit drawn c times is trained on c times: a frame's spec is
    repeated ``max c`` times, copy j holding the regions drawn more than j times. Units are
    never invented: every region of the result was labelled. Empty ``specs`` -> ``[]``."""
    units = [(i, j) for i, s in enumerate(specs)
             for j in (range(len(s.regions)) if _splittable(s) else (None,))]
    if not units:
        return []
    draws = np.random.default_rng([int(seed), int(k)]).integers(0, len(units), len(units))
    counts = np.bincount(draws, minlength=len(units))
    per_spec: dict[int, list[tuple[int | None, int]]] = {}
    for (i, j), c in zip(units, counts):
        if c:
            per_spec.setdefault(i, []).append((j, int(c)))
    out = []
    for i in sorted(per_spec):
        spec, drawn = specs[i], per_spec[i]
        for copy in range(max(c for _, c in drawn)):
            if not _splittable(spec):
                out.append(spec)
                continue
            keep = [j for j, c in drawn if c > copy]
            out.append(LabelSpec(spec.frame_id, spec.annotation,
                                 tuple(spec.regions[j] for j in keep),
                                 tuple(spec.dominant[j] for j in keep) if spec.dominant else None))
    return out


def _splittable(spec: LabelSpec) -> bool:
    return spec.regions is not None and spec.annotation != "points" and len(spec.regions) > 0


def member_config(config: RayalConfig, k: int, torch_threads: int | None = None) -> RayalConfig:
    """``config`` for member ``k``: its seed, and ``train.torch_threads`` when given."""
    cc = config.train.committee
    out = config.model_copy(deep=True)
    out.seed = member_seed(config.seed, k, cc.seed_offset)
    if torch_threads is not None and out.train.torch_threads is None:
        out.train.torch_threads = torch_threads
    return out


def member_specs(config: RayalConfig, specs: list[LabelSpec], k: int) -> list[LabelSpec]:
    """The training set of member ``k`` (see the module docstring)."""
    cc = config.train.committee
    if not cc.bootstrap or (k == 0 and cc.lead_on_all):
        return list(specs)
    return bootstrap_specs(specs, config.seed, k)


def member_progress(directory: str) -> dict:
    """``{"finished": bool, "epochs": completed epochs}`` of a member's checkpoint directory
    (no ``loop_state.json`` yet: nothing done). ``epochs`` is what a resume starts from: the
    state inside ``last.pt`` (``loop_state.json`` is written just before it, so a kill between
    the two leaves it one epoch ahead)."""
    from rayal.train.loop import BEST, LAST, load_state, read_loop_state

    state_file = join_uri(directory, "loop_state.json")
    if not exists(state_file):
        return {"finished": False, "epochs": 0}
    state = read_loop_state(directory)
    last = join_uri(directory, LAST)
    durable = load_state(last, map_location="cpu")["state"] if exists(last) else {"epoch": -1}
    return {"finished": bool(state["finished"]) and exists(join_uri(directory, BEST)),
            "epochs": int(durable["epoch"]) + 1}


def is_manifest(checkpoint: str | None) -> bool:
    return checkpoint is not None and os.fspath(checkpoint).endswith(".json")


def write_manifest(train_dir: str, checkpoints: list[str]) -> str:
    """Write ``<train_dir>/committee.json``; returns its URI."""
    from rayal.train.checkpoint import store_bytes

    uri = join_uri(os.fspath(train_dir), MANIFEST)
    store_bytes(uri, json.dumps({"members": [os.fspath(c) for c in checkpoints]}).encode())
    return uri


def read_manifest(uri: str) -> list[str]:
    """Member checkpoint URIs of a committee manifest. Raises ValueError naming the file when
    it is not a manifest (no non-empty ``members`` list of strings)."""
    from rayal.train.checkpoint import load_bytes

    try:
        members = json.loads(load_bytes(uri, "committee manifest"))["members"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"committee manifest {uri}: not a JSON object with a 'members' list") from None
    if not members or not all(isinstance(m, str) for m in members):
        raise ValueError(f"committee manifest {uri}: 'members' must be a non-empty list of paths")
    return members


def lead_checkpoint(checkpoint: str | None) -> str | None:
    """The one model to evaluate / pseudo-label with: member 0 of a manifest, else ``checkpoint``."""
    return read_manifest(checkpoint)[0] if is_manifest(checkpoint) else checkpoint


def member_init(previous: str | None, k: int) -> str | None:
    """Warm start of member ``k``: the previous round's member k (its lead when the previous
    checkpoint is one model or a smaller committee); None without a previous checkpoint."""
    if previous is None:
        return None
    if not is_manifest(previous):
        return previous
    members = read_manifest(previous)
    return members[k] if k < len(members) else members[0]


def training_cpus(train: TrainConfig) -> float:
    """CPUs a round's training reserves at once on the Ray cluster (beyond the driver):
    Ray Train workers, times the members trained in parallel; a parallel committee in local
    Train mode (``num_workers: 0``) reserves ``cpus_per_member`` per member task."""
    cc = train.committee
    workers = train.num_workers * train.cpus_per_worker
    if cc.members < 2 or not cc.parallel:
        return workers
    return cc.members * (workers if train.num_workers else cc.cpus_per_member)
