"""Ray Train wrapper: run :func:`rayal.train.loop.train_loop` in a ``TorchTrainer``.

``train.num_workers: 0`` is Ray Train's local mode (the loop runs in this process); N >= 1
starts N workers with DDP (gloo on CPU, nccl on GPU). Checkpoints are rayal's own files in
``checkpoint_dir`` (shared storage on a multi-node cluster, e.g. an ``s3://`` / ``gs://`` URI):
a worker group restarted after a failure, or a rerun after a crash, resumes from ``last.pt``.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from rayal.config.sections import RayalConfig
from rayal.data import exists, has_scheme, join_uri, remove
from rayal.data.errors import FrameError
from rayal.data.splits import labelled_split
from rayal.train.checks import DegenerateSplitError
from rayal.train.checkpoint import load_bytes, read_checkpoint, store_bytes, write_checkpoint
from rayal.train.dataset import LabelSpec, TrainingSet, pad_batch
from rayal.train.loop import BEST, check_training_data, read_loop_state, train_loop

# What a worker group writes (rank 0, in the checkpoint folder) instead of failing when the
# training data is refused (a bad mask, a split without a labelled pixel): that is deterministic,
# so Ray Train's restart (FailureConfig.max_failures, for lost workers) would only fail the same
# way again. fit() raises the pickled error and removes the file.
DATA_REFUSED = "data_refused.pkl"
_DATA_ERRORS = (FrameError, DegenerateSplitError)


@dataclass
class TrainJob:
    """Everything a worker needs to build its training set (all picklable)."""

    config: dict
    specs: list[LabelSpec]
    checkpoint_dir: str
    init_checkpoint: str | None = None
    pseudo: dict | None = None
    progress: bool = False


def _device(config: RayalConfig) -> torch.device:
    import ray.train

    if config.train.num_workers > 0:
        return ray.train.torch.get_device()
    from rayal.models.device import resolve_device
    return resolve_device(config.device)


def build_training_set(config: RayalConfig, specs: list[LabelSpec], pseudo: dict | None = None
                       ) -> TrainingSet:
    return TrainingSet(
        labelled_split(config.data, config.data.pool_split), specs, unit=config.pool.unit,
        scoring=config.scoring, augment_config=config.train.augment, seed=config.seed,
        masks_dir=config.train.masks_dir, pseudo=pseudo or {})


def _validation_split(config: RayalConfig):
    tc = config.train
    return labelled_split(config.data, tc.val_split or config.data.eval_split).head(tc.val_limit)


def training_seeded(config: RayalConfig) -> RayalConfig:
    """``config`` whose ``seed`` is the training seed, ``seed + train.seed_offset`` (a copy when
    the offset is not 0). Everything a training draws at random follows it."""
    if not config.train.seed_offset:
        return config
    out = config.model_copy(deep=True)
    out.seed, out.train.seed_offset = config.seed + config.train.seed_offset, 0
    return out


def check_splits(config: RayalConfig) -> None:
    """The evaluation and validation splits resolve to frames, before any epoch (a slice past a
    split's end would otherwise surface when the finished training is evaluated).

    Raises:
        ValueError: naming the field (``data.eval_split`` / ``train.val_split``) and the cause.
    """
    for field, split in (("data.eval_split", config.data.eval_split),
                         ("train.val_split", config.train.val_split)):
        if split is None:
            continue
        try:
            labelled_split(config.data, split)
        except (ValueError, OSError) as err:
            raise ValueError(f"{field}: {err}") from err


def train_worker(job: dict) -> None:
    """Ray Train's ``train_loop_per_worker``: one worker's share of the run."""
    import ray.train

    job = TrainJob(**job)
    config = RayalConfig.model_validate(job.config)
    if config.train.torch_threads:
        torch.set_num_threads(config.train.torch_threads)
    init_state = None
    if job.init_checkpoint:
        init_state = read_checkpoint(job.init_checkpoint)[0].state_dict()
    train_set = build_training_set(config, job.specs, job.pseudo)
    val_split = _validation_split(config)
    rank = ray.train.get_context().get_world_rank()
    try:   # on every rank, before DDP starts: every rank refuses the same data the same way
        check_training_data(train_set, val_split, config.data.class_names, warn=rank == 0)
    except _DATA_ERRORS as err:
        if rank == 0:
            store_bytes(join_uri(job.checkpoint_dir, DATA_REFUSED), pickle.dumps(err))
        return
    device = _device(config)
    state = train_loop(config, train_set, val_split, job.checkpoint_dir, device,
                       init_state=init_state, report=lambda metrics: ray.train.report(metrics),
                       progress=job.progress, check=False)
    if config.madbal.enabled and rank == 0:
        madbal_phase2(config, train_set, job.checkpoint_dir, state, device)


def madbal_phase2(config: RayalConfig, train_set: TrainingSet, checkpoint_dir: str | Path,
                  state: dict, device: torch.device) -> None:
    """MADBAL phase II on the best phase-I weights: the extra modules learn, the segmentation
    model stays frozen; ``best.pt`` is rewritten with them (once: a resumed run skips it)."""
    from rayal.train.loop import epoch_order
    from rayal.train.madbal import train_phase2

    best = join_uri(os.fspath(checkpoint_dir), BEST)
    model, meta = read_checkpoint(best)
    if meta.get("phase2"):
        return
    plain = TrainingSet(train_set.split, train_set.specs, unit=train_set.unit, scoring=train_set.scoring,
                 masks_dir=train_set.masks_dir, pseudo=train_set.pseudo)   # no augmentation
    batches = [pad_batch([plain[i] for i in idx], train_set.split.ignore_index)
               for idx in epoch_order(len(plain), config.seed, 0, config.train.batch_size, None, 0, 1)]
    report = train_phase2(model.to(device), batches, config.madbal,
                          num_classes=train_set.split.num_classes,
                          ignore_index=train_set.split.ignore_index, seed=config.seed, device=device)
    write_checkpoint(best, model, meta=dict(meta, phase2={"epochs": report["epochs"],
                                                          "steps": report["steps"]}))


def use_gpu(config: RayalConfig) -> bool:
    return torch.cuda.is_available() if config.train.use_gpu is None else config.train.use_gpu


def fit(config: RayalConfig, specs: list[LabelSpec], checkpoint_dir: str | Path, *,
        init_checkpoint: str | None = None, pseudo: dict | None = None, run_name: str = "train",
        progress: bool = False) -> dict:
    """Train through Ray Train; returns the loop state saved in ``checkpoint_dir``
    (``history``, ``best_miou``, ``best_epoch``...) plus ``best_checkpoint``.

    Refused training data (a :class:`~rayal.data.errors.LabelError` naming the frame, a
    :class:`~rayal.train.checks.DegenerateSplitError` naming the split) is raised here, as the
    workers found it, without a worker-group restart: a restart is for lost workers.

    ``checkpoint_dir`` is a local path or a URI. Ray Train's own storage (``train.storage_path``)
    defaults to ``<output_dir>/ray_train``, in the bucket when ``output_dir`` is a URI."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if not specs:
        raise ValueError("the labelled set is empty: label some units first (rayal pool ingest) "
                         "or use train.labels: split | full")
    tc = config.train
    check_splits(config)
    config = training_seeded(config)
    checkpoint_dir = _absolute(checkpoint_dir)
    storage = _absolute(tc.storage_path or join_uri(config.output_dir, "ray_train"))
    job = TrainJob(config.model_dump(mode="json"), list(specs), checkpoint_dir,
                   init_checkpoint, pseudo, progress and tc.num_workers == 0)
    resources = {"CPU": tc.cpus_per_worker}
    if tc.num_workers > 0 and use_gpu(config):
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_worker, train_loop_config=job.__dict__,
        scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=use_gpu(config),
                                     resources_per_worker=resources if tc.num_workers else None),
        run_config=RunConfig(name=run_name, storage_path=storage,
                             failure_config=FailureConfig(max_failures=1)))
    refused = join_uri(checkpoint_dir, DATA_REFUSED)
    remove(refused)   # a rerun after the data was mended
    trainer.fit()
    if exists(refused):
        err = pickle.loads(load_bytes(refused, "refused training data"))
        remove(refused)
        raise err
    best = join_uri(checkpoint_dir, BEST)
    return dict(read_loop_state(checkpoint_dir), best_checkpoint=best if exists(best) else None)


def _absolute(path: str | Path) -> str:
    """Local paths made absolute (workers may run elsewhere); URIs unchanged."""
    path = os.fspath(path)
    return path if has_scheme(path) else os.path.abspath(path)
