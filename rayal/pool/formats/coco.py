"""``coco``: the round's query and its labels as one COCO JSON (``round-R.coco.json``).

* ``categories``: one per class, ``id`` = rayal's class id (0-based), ``name`` = its name;
* ``images``: one per frame of the query: ``id`` (1..), ``file_name`` (the frame's URI),
  ``height``, ``width`` (original, upright), ``rayal_frame_id``;
* ``annotations``: the labels, when the export is given a label source (``--labels oracle`` or
  a masks directory): per unit and class present in it, the class's pixels inside the unit as a
  compressed RLE (pycocotools) with ``area``, ``bbox`` [x, y, w, h], ``iscrowd`` 0 and
  ``rayal_unit`` {``round``, ``region_id``}; without one, ``[]`` (for the labelling tool to fill);
* ``rayal_units``: the units to label: ``image_id``, ``frame_id``, ``region_id``, ``round``,
  ``rank``, ``score`` and the region as a compressed RLE ``segmentation`` and ``bbox``.

Ingest reads ``images`` and ``annotations`` of such a file (or any COCO JSON whose images carry
``rayal_frame_id`` or a ``file_name`` whose stem is a frame id): each image's annotations are
painted in order (RLE, compressed or not, or polygons) into a frame mask, ``ignore_index``
elsewhere, and the frame's queued units are summarised from it, exactly as a full-frame PNG.
Refused, naming the image / frame: an image size that is not the frame's, an unknown
``category_id``, an annotation of an unknown image, a frame with no queued unit, an
annotation whose ``rayal_unit`` is not queued, a segmentation that does not decode.
"""
from __future__ import annotations

import json
import os

import numpy as np

from rayal.data import LabelError, join_uri
from rayal.pool.formats.base import ExportRequest, Format, IngestRequest
from rayal.pool.formats.common import (LabelSource, batch_of, frame_info, frame_sizes,
                                       read_json_document,
                                       summarize_frame, units_by_frame)


def encode_rle(mask: np.ndarray) -> dict:
    """bool (H, W) -> COCO compressed RLE ``{"size": [H, W], "counts": str}``."""
    from pycocotools import mask as coco

    rle = coco.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_segmentation(seg, size) -> np.ndarray:
    """A COCO ``segmentation`` (RLE with str or int-list counts, or polygons ``[[x, y, ...]]``)
    -> bool (H, W) at ``size``; ValueError saying what does not fit."""
    from pycocotools import mask as coco

    h, w = (int(v) for v in size)
    if isinstance(seg, list):
        try:
            polys = [[float(v) for v in p] for p in seg]
        except (TypeError, ValueError):
            raise ValueError("polygon segmentation must be [[x, y, x, y, ...], ...]") from None
        if not polys or any(len(p) < 6 or len(p) % 2 for p in polys):
            raise ValueError("a polygon needs at least 3 (x, y) points")
        return coco.decode(coco.merge(coco.frPyObjects(polys, h, w))).astype(bool)
    if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
        raise ValueError("segmentation needs 'size' [H, W] and 'counts' (RLE) or polygons")
    try:
        seg_size = [int(v) for v in seg["size"]]
    except (TypeError, ValueError):
        raise ValueError(f"segmentation size {seg['size']!r} is not [H, W]") from None
    if seg_size != [h, w]:
        raise ValueError(f"mask size {seg_size[0]}x{seg_size[1]} (HxW) does not match image size "
                         f"{h}x{w}")
    counts = seg["counts"]
    try:
        if isinstance(counts, list):
            if sum(int(c) for c in counts) != h * w or min(counts, default=0) < 0:
                raise ValueError(f"counts do not cover {h}x{w} pixels")
            rle = coco.frPyObjects({"size": seg_size, "counts": counts}, h, w)
        elif isinstance(counts, str):
            rle = {"size": seg_size, "counts": counts.encode("ascii")}
        else:
            raise ValueError("counts must be a string or a list of integers")
        out = coco.decode(rle).astype(bool)
    except ValueError:
        raise
    except Exception as err:  # noqa: BLE001 - pycocotools raises bare errors on bad input
        raise ValueError(f"RLE does not decode: {err}") from None
    if out.shape != (h, w):
        raise ValueError(f"RLE does not cover {h}x{w} pixels")
    return out


def _bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def export(req: ExportRequest) -> dict:
    from rayal.pool.export import _write_atomic, frame_region_map

    c, data = req.config, req.config.data
    names = data.class_names or [str(i) for i in range(data.num_classes)]
    info = frame_info(req.frames)
    rows = req.query.sort_by("rank").to_pylist()
    order = list(dict.fromkeys(r["frame_id"] for r in rows))
    sizes = frame_sizes(order, info, data)
    source = LabelSource(req.labels, req.frames, data) if req.labels else None
    images, annotations, units = [], [], []
    by_frame: dict[str, list[dict]] = {}
    for r in rows:
        by_frame.setdefault(r["frame_id"], []).append(r)
    for image_id, frame_id in enumerate(order, 1):
        uri = info[frame_id][0]
        h, w = sizes[frame_id]
        images.append({"id": image_id, "file_name": uri, "height": h, "width": w,
                       "rayal_frame_id": frame_id})
        regions = frame_region_map(frame_id, uri, c.pool.unit, c.scoring, data)
        labels = source.mask(frame_id, (h, w)) if source else None
        for r in by_frame[frame_id]:
            region = np.ones((h, w), bool) if r["region_id"] < 0 else regions == r["region_id"]
            units.append({"image_id": image_id, "frame_id": frame_id, "region_id": r["region_id"],
                          "round": req.round_id, "rank": r["rank"], "score": r["score"],
                          "segmentation": encode_rle(region), "bbox": _bbox(region)})
            if labels is None:
                continue
            for cls in np.unique(labels[region]).tolist():
                if cls == data.ignore_index:
                    continue
                pixels = region & (labels == cls)
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": int(cls),
                    "segmentation": encode_rle(pixels), "area": int(pixels.sum()),
                    "bbox": _bbox(pixels), "iscrowd": 0,
                    "rayal_unit": {"round": req.round_id, "region_id": r["region_id"]}})
    doc = {"info": {"description": f"rayal query of round {req.round_id}",
                    "project": c.pool.project, "unit": c.pool.unit, "round": req.round_id},
           "categories": [{"id": i, "name": n, "supercategory": "rayal"} for i, n in enumerate(names)],
           "images": images, "annotations": annotations, "rayal_units": units}
    from rayal.data import makedirs

    makedirs(req.out_dir)
    path = join_uri(req.out_dir, f"round-{int(req.round_id):04d}.coco.json")
    _write_atomic(path, json.dumps(doc).encode())
    return {"files": [path], "rows": len(units), "annotations": len(annotations)}


def _frame_of(image: dict, info: dict) -> str:
    frame_id = image.get("rayal_frame_id")
    if frame_id is None and isinstance(image.get("file_name"), str):
        frame_id = os.path.splitext(image["file_name"].replace("\\", "/").rsplit("/", 1)[-1])[0]
    if frame_id not in info:
        raise ValueError(f"COCO image {image.get('id')!r} ({image.get('file_name')!r}): no frame "
                         "of the pool (give rayal_frame_id or a file_name named after the frame)")
    return frame_id


def ingest(req: IngestRequest):
    c, data = req.config, req.config.data
    doc = read_json_document(req.source, "COCO JSON")
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) \
            or not isinstance(doc.get("annotations"), list):
        raise ValueError(f"{req.source}: a COCO JSON object needs 'images' and 'annotations' lists")
    info, queued = frame_info(req.frames), units_by_frame(req.units)
    images = {}
    for image in doc["images"]:
        if not isinstance(image, dict) or "id" not in image:
            raise ValueError(f"{req.source}: every image needs an 'id'")
        images[image["id"]] = (image, _frame_of(image, info))
    by_image: dict = {}
    for ann in doc["annotations"]:
        if not isinstance(ann, dict) or ann.get("image_id") not in images:
            raise ValueError(f"COCO annotation {ann.get('id') if isinstance(ann, dict) else ann!r}:"
                             f" unknown image_id {ann.get('image_id') if isinstance(ann, dict) else None!r}")
        by_image.setdefault(ann["image_id"], []).append(ann)
    rows, errors = [], []
    for image_id, anns in by_image.items():
        image, frame_id = images[image_id]
        region_ids = queued.get(frame_id)
        try:
            if not region_ids:
                raise ValueError(f"frame {frame_id} (COCO image {image_id}): no unit of it is "
                                 "queued for labels")
            size = frame_sizes([frame_id], info, data)[frame_id]
            given = (image.get("height"), image.get("width"))
            if given != tuple(size):
                raise LabelError(f"COCO image {image_id}: size {given[0]}x{given[1]} (HxW) does "
                                 f"not match the frame's {size[0]}x{size[1]}", frame_id=frame_id)
            mask = np.full(size, data.ignore_index, np.int32)
            for ann in anns:
                cls, unit = ann.get("category_id"), ann.get("rayal_unit")
                if isinstance(cls, bool) or not isinstance(cls, int) or not 0 <= cls < data.num_classes:
                    raise LabelError(f"annotation {ann.get('id')!r}: unknown class id {cls!r} "
                                     f"(valid 0..{data.num_classes - 1})", frame_id=frame_id)
                if isinstance(unit, dict) and unit.get("region_id") not in region_ids:
                    raise ValueError(f"unit {frame_id} region {unit.get('region_id')!r} (COCO "
                                     f"annotation {ann.get('id')!r}) is not queued for labels")
                try:
                    mask[decode_segmentation(ann.get("segmentation"), size)] = cls
                except ValueError as err:
                    raise LabelError(f"annotation {ann.get('id')!r}: {err}",
                                     frame_id=frame_id) from None
            found = summarize_frame(frame_id, info[frame_id][0], mask, region_ids, unit=c.pool.unit,
                                    data=data, scoring=c.scoring)
        except (LabelError, ValueError) as err:
            if req.on_error == "raise" or not isinstance(err, LabelError):
                raise
            errors.append((frame_id, region_ids, str(err)))
            continue
        rows += [(frame_id, r, d, cnt) for r, d, cnt in found]
    batch = batch_of(rows, errors, data.num_classes)
    done = {(f, r) for f, r, _, _ in rows}
    batch.missing = [(f, r) for f, regions in queued.items() for r in regions if (f, r) not in done]
    return batch


FORMAT = Format("coco", "COCO JSON: images, categories, label annotations as RLE (pycocotools)",
                export=export, ingest=ingest, extensions=(".json",))
