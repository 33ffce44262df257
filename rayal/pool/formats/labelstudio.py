"""``labelstudio``: Label Studio tasks JSON (``round-R.labelstudio.json``), one task per unit.

Each task's ``data`` is what ``rayal serve`` gives Label Studio (:func:`rayal.pool.formats.ls_results.
task_data`): ``image`` (the frame's URI, or ``<image_base>/<file name>`` when the export is
given ``image_base``), ``rayal_task``, ``frame_id``, ``region_id``, ``round``, ``rank``,
``priority``. With a label source, each task carries one annotation whose results are
``brushlabels`` (brush RLE, :mod:`rayal.pool.formats.brush`) of each class inside the unit, with
``from_name`` ``label`` and ``to_name`` ``image`` (``<BrushLabels name="label" toName="image">``).

Ingest reads a list of such tasks (as Label Studio exports them, JSON): the task's unit from
its ``data``, the last annotation that was not cancelled (``result``: ``brushlabels`` or
``polygonlabels``, :func:`rayal.pool.formats.ls_results.results_to_mask`); tasks without one are
``missing``. Refused, naming the unit: a task whose unit is not queued, a result of another
image size, an unknown label, a brush RLE that does not decode.
"""
from __future__ import annotations

import json

import numpy as np

from rayal.data import LabelError, join_uri
from rayal.pool.formats.base import ExportRequest, Format, IngestRequest
from rayal.pool.formats.ls_results import (class_labels, prediction_results, resolve_task,
                                           results_to_mask, task_data)
from rayal.pool.tasks import TaskError, task_id
from rayal.pool.formats.common import (LabelSource, batch_of, frame_info, frame_sizes,
                                       read_json_document,
                                       summarize_frame)

CONTROL = {"from_name": "label", "to_name": "image", "labels": []}


def export(req: ExportRequest, image_base: str | None = None) -> dict:
    from rayal.data import makedirs
    from rayal.pool.export import _write_atomic, frame_region_map

    c, data = req.config, req.config.data
    names = class_labels(data.num_classes, data.class_names)
    info = frame_info(req.frames)
    rows = req.query.sort_by("rank").to_pylist()
    sizes = frame_sizes(list(dict.fromkeys(r["frame_id"] for r in rows)), info, data)
    source = LabelSource(req.labels, req.frames, data) if req.labels else None
    regions_of, labels_of, tasks = {}, {}, []
    for r in rows:
        f, uri = r["frame_id"], info[r["frame_id"]][0]
        if f not in regions_of:
            regions_of[f] = frame_region_map(f, uri, c.pool.unit, c.scoring, data)
            labels_of[f] = source.mask(f, sizes[f]) if source else None
        image = uri if image_base is None else join_uri(image_base, uri.rsplit("/", 1)[-1])
        task = {"data": task_data(req.round_id, f, r["region_id"], r["rank"], len(rows), image)}
        labels = labels_of[f]
        if labels is not None:
            region = np.ones(sizes[f], bool) if r["region_id"] < 0 else regions_of[f] == r["region_id"]
            painted = np.where(labels == data.ignore_index, -1, labels)
            results = prediction_results(np.maximum(painted, 0), region & (painted >= 0),
                                         CONTROL, names)
            task["annotations"] = [{"result": results, "was_cancelled": False}]
        tasks.append(task)
    makedirs(req.out_dir)
    path = join_uri(req.out_dir, f"round-{int(req.round_id):04d}.labelstudio.json")
    _write_atomic(path, json.dumps(tasks).encode())
    return {"files": [path], "rows": len(tasks)}


def ingest(req: IngestRequest):
    c, data = req.config, req.config.data
    tasks = read_json_document(req.source, "Label Studio tasks JSON")
    if not isinstance(tasks, list):
        raise ValueError(f"{req.source}: Label Studio tasks JSON must be a list of tasks")
    info = frame_info(req.frames)
    queued = {task_id(r, f, g): (f, g) for f, g, r in zip(
        *(req.units.column(n).to_pylist() for n in ("frame_id", "region_id", "round")))}
    rounds = req.units.column("round").to_pylist()
    rows, errors = [], []
    for i, task in enumerate(tasks):
        where = f"Label Studio task {task.get('id', i) if isinstance(task, dict) else i}"
        try:
            tid = resolve_task(task.get("data") if isinstance(task, dict) else None,
                               max(rounds) if rounds else None)
        except TaskError as err:
            raise ValueError(f"{where}: {err.message}") from None
        if tid not in queued:
            raise ValueError(f"unit {tid} ({where}) is not queued for labels")
        frame_id, region_id = queued[tid]
        done = [a for a in task.get("annotations") or [] if isinstance(a, dict)
                and not a.get("was_cancelled")]
        if not done:
            continue
        uri = info[frame_id][0]
        try:
            size = frame_sizes([frame_id], info, data)[frame_id]
            try:
                mask = results_to_mask(done[-1].get("result"), size=size,
                                       num_classes=data.num_classes,
                                       ignore_index=data.ignore_index,
                                       class_names=data.class_names, unit=tid)
            except TaskError as err:
                raise LabelError(f"unit {tid}: {err.message}", frame_id=frame_id) from None
            found = summarize_frame(frame_id, uri, mask, [region_id], unit=c.pool.unit,
                                    data=data, scoring=c.scoring)
        except LabelError as err:
            if req.on_error == "raise":
                raise
            errors.append((frame_id, [region_id], str(err)))
            continue
        rows += [(frame_id, r, d, cnt) for r, d, cnt in found]
    batch = batch_of(rows, errors, data.num_classes)
    got = {(f, r) for f, r, _, _ in rows}
    batch.missing = [v for v in queued.values() if v not in got]
    return batch


FORMAT = Format("labelstudio", "Label Studio tasks JSON, labels as brushlabels (brush RLE)",
                export=export, ingest=ingest, extensions=(".json",))
