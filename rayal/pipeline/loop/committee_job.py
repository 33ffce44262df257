"""A round's committee training on Ray: K members at once, resumable member by member.

``train.committee.parallel`` (and Ray initialised, K >= 2): with ``train.num_workers: 0`` each
member is one Ray task reserving ``train.committee.cpus_per_member`` CPUs that runs the member's
Ray Train local-mode run in its worker process (one torch thread unless ``train.torch_threads``
says otherwise); with ``num_workers >= 1`` each member is its own Ray Train run (its workers
reserve their own CPUs / GPUs), started from a driver thread. Otherwise the members train one
after the other in this process. Either way a member already finished (``loop_state.json``
finished and ``best.pt`` present) is kept, an interrupted one resumes from its ``last.pt``, and
the manifest is written only when all K are done. A failing member does not stop the others:
they finish (their checkpoints are kept) and the first failure is raised, naming the member.
Layout and seeds: :mod:`rayal.train.committee`.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from rayal.config.sections import RayalConfig
from rayal.train.committee import (member_config, member_dir, member_init, member_progress,
                                   member_specs, write_manifest)
from rayal.train.dataset import LabelSpec

__all__ = ["train_committee"]


def _fit_member(config_json: dict, specs: list[LabelSpec], directory: str, init: str | None,
                pseudo: dict | None, run_name: str) -> dict:
    """Train one member (in this process or a Ray task's); returns where it ran and its result."""
    from rayal.train.trainer import fit

    config = RayalConfig.model_validate(config_json)
    if config.train.torch_threads:
        import torch
        torch.set_num_threads(config.train.torch_threads)
    state = fit(config, specs, directory, init_checkpoint=init, pseudo=pseudo, run_name=run_name)
    return {"pid": os.getpid(), "best_checkpoint": state["best_checkpoint"],
            "epochs": len(state["history"])}


def train_committee(config: RayalConfig, specs: list[LabelSpec], train_dir: str, *,
                    previous: str | None = None, pseudo: dict | None = None,
                    run_name: str = "committee") -> tuple[str, list[dict]]:
    """Train the ``train.committee.members`` members of one round under ``train_dir``.

    specs: the round's labelled units (each member resamples them, see
    :func:`rayal.train.committee.member_specs`); previous: the previous round's checkpoint
    (manifest or one model) for warm starts, used when ``train.warm_start``; pseudo: CEAL
    pseudo-labels shared by every member. Returns (manifest URI, one report per member:
    ``member``, ``status`` kept | resumed | trained, ``epochs_before``, ``pid`` of the process
    that trained it, ``best_checkpoint``).

    Raises:
        ValueError: the labelled set is empty.
        RuntimeError: a member failed (after the others finished), naming it and its error.
    """
    if not specs:
        raise ValueError("the labelled set is empty: a committee needs labelled units to resample")
    cc, tc = config.train.committee, config.train
    parallel = cc.parallel and cc.members > 1 and _ray_ready()
    threads = 1 if parallel and tc.num_workers == 0 else None
    reports, todo = [], []
    for k in range(cc.members):
        directory = member_dir(train_dir, k)
        progress = member_progress(directory)
        status = "kept" if progress["finished"] else ("resumed" if progress["epochs"] else "trained")
        reports.append({"member": k, "status": status, "epochs_before": progress["epochs"],
                        "pid": None, "best_checkpoint": os.fspath(join_best(directory))})
        if status != "kept":
            init = member_init(previous, k) if tc.warm_start else None
            args = (member_config(config, k, threads).model_dump(mode="json"),
                    member_specs(config, specs, k), directory, init, pseudo, f"{run_name}-m{k}")
            todo.append((k, args))
    results = _run(todo, parallel, config)
    errors = []
    for k, outcome in results.items():
        if isinstance(outcome, BaseException):
            errors.append(f"committee member {k}: {type(outcome).__name__}: {outcome}")
        else:
            reports[k].update(pid=outcome["pid"], best_checkpoint=outcome["best_checkpoint"])
    if errors:
        raise RuntimeError("; ".join(errors))
    missing = [r["member"] for r in reports if not r["best_checkpoint"]]
    if missing:
        raise RuntimeError(f"committee members {missing} left no best.pt under {train_dir}")
    return write_manifest(train_dir, [r["best_checkpoint"] for r in reports]), reports


def join_best(directory: str) -> str:
    from rayal.data import join_uri
    from rayal.train.loop import BEST

    return join_uri(directory, BEST)


def _ray_ready() -> bool:
    import ray

    return ray.is_initialized()


def _run(todo: list[tuple[int, tuple]], parallel: bool, config: RayalConfig) -> dict:
    """member -> result dict or the exception it raised."""
    if not todo:
        return {}
    if not parallel or len(todo) == 1:
        out = {}
        for k, args in todo:
            try:
                out[k] = _fit_member(*args)
            except Exception as err:   # noqa: BLE001 - reported with the member, after the rest
                out[k] = err
        return out
    if config.train.num_workers > 0:   # each member is its own Ray Train run (own workers)
        with ThreadPoolExecutor(len(todo)) as pool:
            futures = {k: pool.submit(_fit_member, *args) for k, args in todo}
        return {k: (f.exception() or f.result()) for k, f in futures.items()}
    import ray

    task = ray.remote(_fit_member).options(num_cpus=config.train.committee.cpus_per_member,
                                           max_retries=1)
    refs = {k: task.remote(*args) for k, args in todo}
    out = {}
    for k, ref in refs.items():
        try:
            out[k] = ray.get(ref)
        except Exception as err:   # noqa: BLE001
            out[k] = err
    return out
