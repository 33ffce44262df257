"""Model versions of a served project, and the current model's prediction for a frame.

Versions are listed in ``<serve_dir>/models.json`` (``{"versions": [{"version", "checkpoint",
"miou", "labelled_frames", "created"}]}``), written atomically by the retrain job. Version 0 is
``model.checkpoint`` of the config, or a fresh model built from ``model`` and ``seed``. Every
reader checks the file's modification time, so a newer model is used for pre-annotations and
the next round without restarting the service.
"""
from __future__ import annotations

import json
import os
import threading
import time

import numpy as np

MODELS_FILE = "models.json"


def read_versions(serve_dir: str) -> list[dict]:
    path = os.path.join(serve_dir, MODELS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f)["versions"]


def add_version(serve_dir: str, checkpoint: str, **info) -> dict:
    """Append a version (number = last + 1) to ``models.json``; returns its row."""
    from rayal.serve.labellog import write_durable

    versions = read_versions(serve_dir)
    row = {"version": len(versions) + 1, "checkpoint": str(checkpoint), "created": time.time(), **info}
    write_durable(os.path.join(serve_dir, MODELS_FILE),
                  json.dumps({"versions": versions + [row]}, indent=2).encode())
    return row


def current_version(serve_dir: str, config) -> dict:
    """The newest version row, or version 0 (``model.checkpoint`` or a fresh model)."""
    versions = read_versions(serve_dir)
    if versions:
        return versions[-1]
    return {"version": 0, "checkpoint": config.model.checkpoint, "miou": None}


def learning_curve(serve_dir: str) -> list[dict]:
    """[{version, labelled_frames, miou}] of every retrained version, oldest first."""
    return [{k: v.get(k) for k in ("version", "labelled_frames", "miou", "created")}
            for v in read_versions(serve_dir)]


class Predictor:
    """The current model, reloaded when a newer version appears; thread-safe."""

    def __init__(self, config, serve_dir: str):
        self.config, self.serve_dir = config, serve_dir
        self._lock = threading.Lock()
        self._loaded: tuple | None = None   # (version, model)

    def model(self):
        """(version row, torch model in eval mode on CPU)."""
        from rayal.models.factory import model_from_config
        from rayal.train.checkpoint import read_checkpoint

        row = current_version(self.serve_dir, self.config)
        with self._lock:
            if self._loaded is None or self._loaded[0]["version"] != row["version"]:
                cfg = self.config
                model = cfg.model.model_copy(update={"checkpoint": row["checkpoint"]})
                net = model_from_config(model, cfg.data.num_classes, seed=cfg.seed,
                                        load=read_checkpoint)
                self._loaded = (row, net.cpu().eval())
            return self._loaded

    def predict(self, frame_id: str, uri: str) -> tuple[np.ndarray, np.ndarray, dict]:
        """(class ids (H, W) uint8 at the frame's original size, confidence (H, W) float32 =
        max softmax probability, version row)."""
        import torch

        from rayal.data import resize_mask
        from rayal.pool.export import load_frame

        row, net = self.model()
        image, size = load_frame(frame_id, uri, self.config.data)
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div_(255.0)
        with torch.no_grad():
            probs = torch.softmax(net(x), dim=1)[0]
        conf, labels = probs.max(dim=0)
        labels = resize_mask(labels.numpy().astype(np.uint8), size)
        conf = resize_mask(conf.numpy().astype(np.float32), size)
        return labels, conf, row
