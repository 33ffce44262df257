"""The scoring stage: decoded frames -> one Arrow row per frame (Ray-free callable).

``scoring.mode``: ``mc_dropout`` (:class:`MCDropoutScorer`), ``multi_head`` (the MADBAL
model's :class:`MultiHeadScorer`, which adds ``maturity_score`` to the frame and region rows) or
``committee`` (:class:`CommitteeScorer`: the K members of a committee manifest, loaded once).

Ray Data runs :class:`FrameBatchScorer` in an actor pool (the model is loaded
once per actor); the bare-loop benchmark calls it directly. Each output row
carries the frame's scores and, in the nested ``regions`` list column, its kept
region rows; :mod:`rayal.pipeline.score.sink` splits them into the parquet tables.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from rayal.config.sections import PIXEL_MEASURES, RayalConfig
from rayal.core.plugins import load_plugins
from rayal.errors import ConfigError
from rayal.models import MadbalNet, model_from_config
from rayal.models.device import resolve_device
from rayal.scoring import CommitteeScorer, MCDropoutScorer, MultiHeadScorer
from rayal.scoring.tables import frame_columns, frame_embedding_rows, region_columns
from rayal.train.checkpoint import read_checkpoint


def _nullable(values: np.ndarray, good: np.ndarray, total: int) -> pa.Array:
    """Scatter per-good-frame values (n, ...) into a column of ``total`` rows, null elsewhere."""
    valid = np.zeros(total, dtype=bool)
    valid[good] = True
    full = np.zeros((total,) + values.shape[1:], dtype=values.dtype)
    full[good] = values
    if values.ndim == 1:
        return pa.array(full, mask=~valid)
    inner = pa.array(full.reshape(-1))
    return pa.FixedSizeListArray.from_arrays(inner, full.shape[1], mask=pa.array(~valid))


def _fixed_list(values: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


class FrameBatchScorer:
    """Callable for ``map_batches``: numpy batch from :class:`DecodeFrames` -> ``pa.Table``."""

    def __init__(self, config: dict | RayalConfig, torch_threads: int | None = None):
        self.config = config if isinstance(config, RayalConfig) else RayalConfig.model_validate(config)
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.device = resolve_device(self.config.device)
        if self.config.scoring.mode == "committee":
            self.members = [m.to(self.device).eval() for m in self._load_committee()]
            self.model = self.members[0]
        else:
            self.model = self._load_model().to(self.device).eval()
        self.num_classes = self.model.num_classes
        sc = self.config.scoring
        self.want_region_emb = "region" in sc.embeddings
        self.ssl = self._load_self_supervised()
        model_frame_emb = "frame" in sc.embeddings and self.ssl is None
        common = dict(mc_samples=sc.mc_samples if sc.uses_mc else 0, dropout_p=sc.dropout_p,
                      position=sc.dropout_position, point_estimate=sc.point_estimate, dice=sc.dice,
                      want_ovr=sc.ovr, want_features=self.want_region_emb or model_frame_emb,
                      scale=sc.scale,
                      seed=self.config.seed)
        load_plugins(self.config.selection.plugins)   # their measures and units, in this worker
        if sc.mode == "multi_head":
            madbal = self.config.madbal
            self.scorer = MultiHeadScorer(self.model, loss_channel=madbal.loss_channel,
                                          edge_threshold=madbal.edge_threshold, **common)
        elif sc.mode == "committee":
            offset = self.config.train.committee.seed_offset
            self.scorer = CommitteeScorer(self.members, member_seeds=[
                self.config.seed + k * offset for k in range(len(self.members))], **common)
        else:
            self.scorer = MCDropoutScorer(self.model, measures=sc.measures, **common)
        self.pixel_measures = [m for m in sc.measures if m in PIXEL_MEASURES]

    def _load_self_supervised(self):
        """(SimCLR net, input size) with ``scoring.embedding_model: self_supervised``, else None.

        Raises:
            ConfigError: no trained encoder is named (``with_self_supervised_encoder`` sets it).
        """
        ssl = self.config.scoring.self_supervised
        if self.config.scoring.embedding_model != "self_supervised":
            return None
        if not ssl.checkpoint:
            raise ConfigError("scoring.embedding_model 'self_supervised' needs a trained encoder "
                              "in scoring.self_supervised.checkpoint (rayal score / run / compare "
                              "train one; see rayal.pipeline.score.self_supervised)")
        from rayal.pipeline.score.self_supervised import load_self_supervised_encoder

        return load_self_supervised_encoder(ssl.checkpoint, self.device)

    def _load_model(self):
        """MC-dropout mode: any model. Multi-head mode: a MadbalNet; a checkpoint must hold
        trained MADBAL modules (a plain one would score with untrained heads, so it is refused).
        ``model.checkpoint`` is a local path or a URI (``s3://.../best.pt``)."""
        cfg = self.config
        if cfg.scoring.mode != "multi_head":
            return model_from_config(cfg.model, cfg.data.num_classes, seed=cfg.seed,
                                     load=read_checkpoint)
        if not cfg.model.checkpoint:  # a fresh model, as MC-dropout mode scores one
            return model_from_config(cfg.model, cfg.data.num_classes, seed=cfg.seed,
                                     madbal=cfg.madbal)
        model = model_from_config(cfg.model, cfg.data.num_classes, seed=cfg.seed,
                                  load=read_checkpoint)
        if not isinstance(model, MadbalNet):
            raise ValueError(f"model.checkpoint {cfg.model.checkpoint} holds no MADBAL modules; "
                             "scoring.mode 'multi_head' needs a model trained with madbal.enabled")
        return model

    def _load_committee(self) -> list:
        """Committee mode: the members of the ``committee.json`` manifest in ``model.checkpoint``,
        or ``train.committee.members`` fresh models (member k seeded ``seed + k * seed_offset``)
        when there is no checkpoint. A single ``.pt`` checkpoint is refused."""
        from rayal.train.committee import is_manifest, member_seed, read_manifest

        cfg = self.config
        if not cfg.model.checkpoint:
            cc = cfg.train.committee
            return [model_from_config(cfg.model, cfg.data.num_classes,
                                      seed=member_seed(cfg.seed, k, cc.seed_offset))
                    for k in range(cc.members)]
        if not is_manifest(cfg.model.checkpoint):
            raise ValueError(f"model.checkpoint {cfg.model.checkpoint} is one model; scoring.mode "
                             "'committee' needs a committee manifest (committee.json, written by "
                             "committee training) or no checkpoint")
        return [model_from_config(cfg.model.model_copy(update={"checkpoint": member}),
                                  cfg.data.num_classes, seed=cfg.seed, load=read_checkpoint)
                for member in read_manifest(cfg.model.checkpoint)]

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        frame_ids = [str(f) for f in batch["frame_id"]]
        errors = [str(e) if e else "" for e in batch["error"]]
        total = len(frame_ids)
        good = np.array([i for i, e in enumerate(errors) if not e], dtype=np.int64)
        # frames of one size are scored together; ragged batches are split by shape
        groups: dict[tuple, list[int]] = {}
        for i in good:
            groups.setdefault(tuple(batch["image"][i].shape), []).append(int(i))
        parts = [self._score_group(batch, idx, frame_ids) for idx in groups.values()]
        return self._assemble(batch, frame_ids, errors, parts, total)

    def _score_group(self, batch: dict, idx: list[int], frame_ids: list[str]) -> dict:
        images = np.stack([batch["image"][i] for i in idx])
        x = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        scores = self.scorer(x, [frame_ids[i] for i in idx])
        sc = self.config.scoring
        frames = frame_columns(scores, sc.measures, sc.aggregate, self.num_classes)
        regions = []
        for unit in sc.units:
            maps = torch.from_numpy(np.stack([batch[f"regions_{unit}"][i] for i in idx]))
            cols = region_columns(scores, maps.to(self.device), unit, self.pixel_measures,
                                  sc.aggregate, self.num_classes, sc.top_k_regions,
                                  self.want_region_emb)
            cols["frame_index"] = np.asarray(idx, dtype=np.int64)[cols["frame_index"]]
            regions.append(cols)
        emb = None
        if self.ssl is not None:
            from rayal.train.simclr import embed_frames

            emb = embed_frames(self.ssl[0], x, self.ssl[1]).cpu().numpy()
        elif "frame" in sc.embeddings:
            emb = frame_embedding_rows(scores)
        return {"idx": np.asarray(idx), "frames": frames, "regions": regions, "frame_emb": emb}

    def _assemble(self, batch: dict, frame_ids: list[str], errors: list[str], parts: list[dict],
                  total: int) -> pa.Table:
        columns: dict[str, pa.Array] = {
            "frame_id": pa.array(frame_ids, pa.string()),
            "uri": pa.array([str(u) for u in batch["uri"]], pa.string()),
            "error": pa.array([e or None for e in errors], pa.string()),
        }
        good = np.concatenate([p["idx"] for p in parts]) if parts else np.zeros(0, np.int64)
        if parts:
            for name in parts[0]["frames"]:
                values = np.concatenate([p["frames"][name] for p in parts])
                columns[name] = _nullable(values, good, total)
            if parts[0]["frame_emb"] is not None:
                emb = np.concatenate([p["frame_emb"] for p in parts])
                columns["frame_embedding"] = _nullable(
                    emb.astype(self.config.scoring.embedding_dtype), good, total)
        columns["regions"] = self._regions_column([r for p in parts for r in p["regions"]], total)
        return pa.table(columns)

    def _regions_column(self, unit_cols: list[dict], total: int) -> pa.Array:
        """Per-frame lists of region structs (empty list for quarantined frames)."""
        if not unit_cols:
            return pa.array([[] for _ in range(total)], pa.list_(pa.struct([])))
        merged = {k: np.concatenate([c[k] for c in unit_cols]) for k in unit_cols[0]}
        order = np.argsort(merged["frame_index"], kind="stable")
        merged = {k: v[order] for k, v in merged.items()}
        counts = np.bincount(merged.pop("frame_index"), minlength=total)
        offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
        fields = {}
        for name, values in merged.items():
            if name == "embedding":
                values = values.astype(self.config.scoring.embedding_dtype)
            fields[name] = _fixed_list(values) if values.ndim == 2 else pa.array(values)
        struct = pa.StructArray.from_arrays(list(fields.values()), names=list(fields))
        return pa.ListArray.from_arrays(offsets, struct)
