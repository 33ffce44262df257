"""Tables and PNG plots of AL runs: learning curve, selected-class shares, selected regions.

Run directories and plot paths are local paths or ``s3://`` / ``gs://`` URIs.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rayal.config.sections import RayalConfig
from rayal.data import join_uri
from rayal.pipeline.storage import read_json, read_parquet, save_figure


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def curve_table(run_dirs: list[str | Path]) -> str:
    """Learning curves side by side: labelled fraction and mIoU per round, per run."""
    runs = []
    for d in map(os.fspath, run_dirs):
        rows = read_parquet(join_uri(d, "rounds.parquet")).to_pylist()
        summary = read_json(join_uri(d, "summary.json"))
        runs.append((summary["strategy"], rows, summary))
    n = max(len(rows) for _, rows, _ in runs)
    head = f"{'round':>5}" + "".join(f"{'labelled ' + s:>22}{'mIoU':>8}" for s, _, _ in runs)
    lines = ["learning curve (labelled: the fraction of the pool's units labelled after the "
             "round, 0-1; mIoU on the eval split)", head]
    for r in range(n):
        line = f"{r:>5}"
        for _, rows, _ in runs:
            line += (f"{rows[r]['labelled_fraction']:>22.3f}{rows[r]['miou']:>8.4f}"
                     if r < len(rows) else " " * 30)
        lines.append(line)
    for strategy, _, s in runs:
        aualc = "-" if s["aualc"] is None else f"{s['aualc']:.4f}"
        b95 = "not reached" if s["budget_to_95"] is None else f"{s['budget_to_95']:.3f}"
        lines.append(f"{strategy:<18} AuALC {aualc}  final mIoU {s['final_miou']:.4f}  "
                     f"full {s['full_miou']:.4f}  budget to 95% {b95}")
    lines.append("(AuALC: area under mIoU / full over the labelled fraction, 1.0 = full supervision "
                 "from the first round; full: the full-supervision reference's mIoU; budget to "
                 "95%: the labelled fraction at the first round reaching 95% of full)")
    return "\n".join(lines)


def plot_learning_curves(curves: dict[str, tuple], full_miou: float | None, path: str | Path,
                         xlabel: str = "labelled fraction of pool units") -> None:
    """``curves``: label -> (x, mean mIoU[, std]) ; a dashed line at full supervision."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, curve in curves.items():
        x, y = np.asarray(curve[0]), np.asarray(curve[1])
        ax.plot(x, y, "o-", label=label)
        if len(curve) > 2 and curve[2] is not None:
            ax.fill_between(x, y - curve[2], y + curve[2], alpha=0.2)
    if full_miou:
        ax.axhline(full_miou, ls="--", color="grey", label="full supervision")
        ax.axhline(0.95 * full_miou, ls=":", color="grey", label="95% of full")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mIoU (eval split)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_class_shares(rows: list[dict], class_names: list[str], path: str | Path) -> None:
    """Stacked bars: each class's share of the units selected per round (dominant GT class)."""
    plt = _plt()
    hist = np.array([r["selected_class_hist"] for r in rows], dtype=np.float64)
    share = hist / np.maximum(hist.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    bottom = np.zeros(len(rows))
    for c in range(share.shape[1]):
        ax.bar([r["round"] for r in rows], share[:, c], bottom=bottom, label=class_names[c])
        bottom += share[:, c]
    ax.set_xlabel("round")
    ax.set_ylabel("share of selected units")
    ax.legend(fontsize=7, ncol=2, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_selected_frames(config: RayalConfig, pool, round_id: int, path: str | Path) -> None:
    """A few frames of one round with their selected regions outlined in red."""
    from skimage.segmentation import find_boundaries

    from rayal.data import unit_region_map
    from rayal.data.splits import labelled_split
    units = pool.units(round_id=round_id)
    frames = units.column("frame_id").unique().to_pylist()[: config.loop.plot_frames]
    if not frames:
        return
    split = labelled_split(config.data, config.data.pool_split)
    plt = _plt()
    fig, axes = plt.subplots(1, len(frames), figsize=(3.2 * len(frames), 2.8), squeeze=False)
    for ax, frame_id in zip(axes[0], frames):
        image, _ = split.load(frame_id)
        picked = [r for f, r in zip(units.column("frame_id").to_pylist(),
                                    units.column("region_id").to_pylist()) if f == frame_id]
        shown = image.astype(np.float32) / 255 * 0.6
        if config.pool.unit != "image":
            regions = unit_region_map(image, config.pool.unit, config.scoring)
            selected = np.isin(regions, picked)
            shown[selected] = image[selected] / 255.0
            shown[find_boundaries(np.where(selected, regions, -1), mode="inner") & selected] = (1, 0, 0)
        else:
            shown = image / 255.0
        ax.imshow(shown)
        ax.set_title(f"{frame_id} ({len(picked)} unit(s))", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"round {round_id}: selected {config.pool.unit} units")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def write_plots(config: RayalConfig, run_dir: str | Path, rows: list[dict], full_miou: float,
                pool) -> None:
    if not rows:
        return
    names = config.data.class_names or [str(c) for c in range(config.data.num_classes)]
    x = [r["labelled_fraction"] for r in rows]
    plot_learning_curves({config.selection.strategy: (x, [r["miou"] for r in rows])}, full_miou,
                         join_uri(run_dir, "learning_curve.png"))
    plot_class_shares(rows, names, join_uri(run_dir, "class_shares.png"))
    if config.loop.plot_frames:
        plot_selected_frames(config, pool, rows[-1]["round"], join_uri(run_dir, "selected_frames.png"))
