"""``rayal train`` / ``rayal evaluate``: the labelled set -> Ray Train -> checkpoint + metrics.

The labelled set comes from the pool state (labelled units of ``pool.project``), a split
list (``train.labels: split``) or every frame of the pool split (``--full``: the
full-supervision reference every learning curve is normalised by). Output, under
``<output_dir>/train`` (or ``/full``): ``best.pt`` / ``last.pt``, ``history.parquet``,
``metrics.json`` (the best checkpoint on ``data.eval_split``) and ``training.png``.
``output_dir`` is a local path or an ``s3://`` / ``gs://`` URI; every output is written through
:mod:`rayal.data.io`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import torch

from rayal.config.sections import RayalConfig
from rayal.data import join_uri, read_split_file
from rayal.data.splits import labelled_split
from rayal.models.device import resolve_device
from rayal.pipeline.runtime import init_ray, write_run_metadata
from rayal.pipeline.storage import save_figure, write_json, write_parquet
from rayal.train.checkpoint import read_checkpoint
from rayal.train.dataset import LabelSpec, eval_batches, specs_from_units
from rayal.train.evaluate import confusion_over, metrics_from_confusion
from rayal.train.trainer import fit


@dataclass
class TrainSummary:
    out_dir: str
    frames: int
    epochs_run: int
    best_epoch: int
    best_val_miou: float
    eval_miou: float
    seconds: float
    checkpoint: str
    select_epoch: str = "best"   # train.select_epoch: best_epoch is the last one with "last"

    def table(self) -> str:
        kept = "best" if self.select_epoch == "best" else "kept (last)"
        rows = [("labelled frames", self.frames), ("epochs run", self.epochs_run),
                (f"{kept} epoch", self.best_epoch), (f"{kept} val mIoU", f"{self.best_val_miou:.4f}"),
                ("eval mIoU", f"{self.eval_miou:.4f}"), ("seconds", f"{self.seconds:.1f}"),
                ("checkpoint", self.checkpoint)]
        return "\n".join(f"{k:<22}{v}" for k, v in rows)


def labelled_specs(config: RayalConfig, full: bool = False) -> list[LabelSpec]:
    """The frames (and units) to train on, as :class:`LabelSpec` s."""
    source = "full" if full else config.train.labels
    if source == "full":
        return [LabelSpec(f) for f in labelled_split(config.data, config.data.pool_split).frame_ids]
    if source == "split":
        return [LabelSpec(f) for f in read_split_file(config.train.label_list)]
    import ray

    from rayal.pool.coordinator import get_or_create_coordinator
    handle = get_or_create_coordinator(config.pool)
    units = ray.get(handle.units.remote(status="labeled"))
    return specs_from_units(units, config.pool.unit)


def evaluate_model(model: torch.nn.Module, config: RayalConfig, split: str | None = None,
                   device: torch.device | None = None) -> dict:
    """Metrics of ``model`` on ``split`` (default ``data.eval_split``)."""
    device = device or resolve_device(config.device)
    data = labelled_split(config.data, split or config.data.eval_split)
    conf = confusion_over(model.to(device), eval_batches(data, config.train.batch_size)(),
                          data.num_classes, data.ignore_index, device)
    return dict(metrics_from_confusion(conf, config.data.class_names), split=data.name,
                frames=len(data))


def plot_history(history: list[dict], path: str | Path) -> None:
    """Training loss and validation mIoU per epoch (PNG at a local path or URI)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [h["loss"] for h in history], "o-", color="tab:red", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy (nats)")
    ax2 = ax.twinx()
    ax2.plot(epochs, [h["val_miou"] for h in history], "s-", color="tab:blue", label="val mIoU")
    ax2.set_ylabel("val mIoU")
    fig.legend(loc="upper center", ncol=2)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def run_training(config: RayalConfig, *, full: bool = False, progress: bool = True,
                 out_name: str | None = None) -> TrainSummary:
    """Train on the configured labelled set, evaluate the best checkpoint, write the outputs."""
    started = time.perf_counter()
    name = out_name or ("full" if full else "train")
    out_dir = join_uri(config.output_dir, name)
    write_run_metadata(config, out_dir)
    init_ray(config.ray)
    specs = labelled_specs(config, full)
    state = fit(config, specs, out_dir, run_name=f"{config.name}-{name}", progress=progress)
    # the history first: whatever happens next, a finished training is never thrown away
    write_parquet(pa.Table.from_pylist(state["history"]), join_uri(out_dir, "history.parquet"))
    plot_history(state["history"], join_uri(out_dir, "training.png"))
    if state["best_checkpoint"] is None:
        raise ValueError(f"training in {out_dir} ran {len(state['history'])} epoch(s) but saved no "
                         "best.pt; its history is in history.parquet and its weights in last.pt")
    model, _ = read_checkpoint(state["best_checkpoint"])
    metrics = evaluate_model(model, config)
    metrics.update(checkpoint=state["best_checkpoint"], best_epoch=state["best_epoch"],
                   best_val_miou=state["best_miou"], labelled_frames=len(specs),
                   best_is_last=bool(state.get("best_is_last", False)),
                   select_epoch=config.train.select_epoch)
    write_json(join_uri(out_dir, "metrics.json"), metrics)
    return TrainSummary(out_dir, len(specs), len(state["history"]), state["best_epoch"],
                        state["best_miou"], metrics["miou"], time.perf_counter() - started,
                        state["best_checkpoint"], config.train.select_epoch)


def run_evaluation(config: RayalConfig, checkpoint: str, out_dir: str | None = None) -> dict:
    """``rayal evaluate``: metrics of a checkpoint on ``data.eval_split`` -> ``metrics.json``."""
    model, meta = read_checkpoint(checkpoint)
    if config.data.num_classes is not None and model.num_classes != config.data.num_classes:
        raise ValueError(f"checkpoint {checkpoint} has {model.num_classes} classes, "
                         f"data.num_classes is {config.data.num_classes}")
    metrics = dict(evaluate_model(model, config), checkpoint=str(checkpoint))
    target = str(out_dir or join_uri(config.output_dir, "evaluate"))
    write_json(join_uri(target, "metrics.json"), metrics)
    metrics["out_dir"] = target
    return metrics


def per_class_table(metrics: dict) -> str:
    lines = [f"{'class':<16}{'IoU':>8}"]
    for name, iou in metrics["per_class_iou"].items():
        lines.append(f"{name:<16}{'-' if iou is None else f'{iou:.4f}':>8}")
    lines.append(f"{'mIoU':<16}{metrics['miou']:>8.4f}")
    return "\n".join(lines)
