"""Label Studio results <-> rayal masks, and Label Studio's tasks for rayal units.

How a Label Studio task maps to a rayal unit: the task's ``data`` carries ``rayal_task`` (the
unit's task id ``<round>.<region_id>.<frame_id>``), or ``frame_id`` and ``region_id`` (and
optionally ``round``; else the newest round whose query holds the unit). ``GET
/v1/projects/{project}/labelstudio/tasks`` writes such tasks for a round's query, with
``image`` a signed URL of the frame the service serves without a bearer token (Label Studio's
browser loads it), so they can be imported into Label Studio as they are.

Classes <-> Label Studio labels: class ``i`` is the ``<Label value>`` ``data.class_names[i]``
(``str(i)`` without class names). Results of type ``brushlabels`` (``value.rle``, brush RLE of
the frame's RGBA layer, :mod:`rayal.pool.formats.brush`) and ``polygonlabels`` (``value.points`` in
percent of the image) are accepted; later results paint over earlier ones; pixels no result
covers are ``ignore_index``. Every error is a :class:`~rayal.pool.tasks.TaskError` 422 naming
the unit and the result.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from rayal.pool.formats.brush import BrushError, mask_to_rle, rle_to_mask
from rayal.pool.tasks import TaskError, parse_task_id, task_id

SEGMENTATION_TYPES = ("brushlabels", "polygonlabels")


def class_labels(num_classes: int, class_names: list[str] | None) -> list[str]:
    """Label Studio label of each class id."""
    return list(class_names) if class_names else [str(i) for i in range(num_classes)]


def parse_label_config(xml: str) -> dict:
    """The segmentation controls of a labelling config -> ``{"brush": {...} | None,
    "polygon": {...} | None}``, each ``{"from_name", "to_name", "labels": [...]}``;
    TaskError 422 when it is not XML or has neither ``<BrushLabels>`` nor ``<PolygonLabels>``."""
    if not isinstance(xml, str) or not xml.strip():
        raise TaskError(422, "label_config must be a Label Studio labelling config (XML)")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise TaskError(422, f"label_config is not valid XML: {err}") from None
    out = {"brush": None, "polygon": None}
    for key, tag in (("brush", "BrushLabels"), ("polygon", "PolygonLabels")):
        node = next(iter(root.iter(tag)), None)
        if node is not None:
            out[key] = {"from_name": node.get("name"), "to_name": node.get("toName"),
                        "labels": [lab.get("value") for lab in node.iter("Label")]}
    if out["brush"] is None and out["polygon"] is None:
        raise TaskError(422, "label_config has no <BrushLabels> or <PolygonLabels> control: "
                        "rayal pre-annotates and ingests segmentation masks")
    return out


def _polygon_mask(points, width: int, height: int, where: str, unit) -> np.ndarray:
    """Pixels whose centre lies inside the polygon (vertices in percent of the image; pixel
    (y, x) spans x..x+1, y..y+1)."""
    from skimage.draw import polygon as fill

    try:
        xy = np.array([(float(x), float(y)) for x, y in points], np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise TaskError(422, f"{where}: value.points must be [[x%, y%], ...]", unit) from None
    if len(xy) < 3:
        raise TaskError(422, f"{where}: a polygon needs at least 3 points, got {len(xy)}", unit)
    out = np.zeros((height, width), bool)
    rows, cols = fill(xy[:, 1] * height / 100.0 - 0.5, xy[:, 0] * width / 100.0 - 0.5,
                      shape=(height, width))
    out[rows, cols] = True
    return out


def results_to_mask(results, *, size, num_classes: int, ignore_index: int,
                    class_names: list[str] | None, unit: str | None) -> np.ndarray:
    """Label Studio annotation results -> (H, W) int32 class ids (``ignore_index`` where no
    result paints). ``results``: the list of result dicts, or ``{"result": [...]}``;
    ``size``: the frame's (H, W). TaskError 422 on anything that does not fit."""
    if isinstance(results, dict) and "result" in results:
        results = results["result"]
    if not isinstance(results, list):
        raise TaskError(422, "labelstudio must be a list of Label Studio results", unit)
    names = class_labels(num_classes, class_names)
    lookup = {name: i for i, name in enumerate(names)}
    height, width = (int(v) for v in size)
    out = np.full((height, width), ignore_index, np.int32)
    used = 0
    for i, res in enumerate(results):
        where = f"result[{i}]"
        if not isinstance(res, dict):
            raise TaskError(422, f"{where} must be an object", unit)
        kind = str(res.get("type", "")).lower()
        if kind not in SEGMENTATION_TYPES:
            continue          # other controls of the same config (choices, text, ...)
        value = res.get("value")
        if not isinstance(value, dict):
            raise TaskError(422, f"{where}: value must be an object", unit)
        ow, oh = res.get("original_width"), res.get("original_height")
        if (ow, oh) != (width, height):
            raise TaskError(422, f"{where}: image size {ow}x{oh} (original_width x "
                            f"original_height) does not match the frame's {width}x{height}", unit)
        labels = value.get(kind)
        if not isinstance(labels, list) or len(labels) != 1:
            raise TaskError(422, f"{where}: value.{kind} must name exactly one label", unit)
        if labels[0] not in lookup:
            raise TaskError(422, f"{where}: unknown label {labels[0]!r} (rayal's classes: "
                            f"{names})", unit)
        if kind == "brushlabels":
            rle = value.get("rle", res.get("rle"))
            if rle is None or value.get("format", "rle") != "rle":
                raise TaskError(422, f"{where}: a brushlabels result needs value.rle "
                                "(format 'rle')", unit)
            try:
                pixels = rle_to_mask(rle, height, width)
            except BrushError as err:
                raise TaskError(422, f"{where}: {err}", unit) from None
        else:
            pixels = _polygon_mask(value.get("points") or [], width, height, where, unit)
        out[pixels] = lookup[labels[0]]
        used += 1
    if not used:
        raise TaskError(422, "no brushlabels or polygonlabels result in the annotation", unit)
    return out


def prediction_results(labels: np.ndarray, region: np.ndarray, control: dict,
                       names: list[str]) -> list[dict]:
    """One ``brushlabels`` result per class the model predicts inside the unit (classes whose
    label the control lacks are left out)."""
    height, width = labels.shape
    out = []
    present = np.unique(labels[region])
    for cls in present.tolist():
        name = names[cls] if cls < len(names) else str(cls)
        if control["labels"] and name not in control["labels"]:
            continue
        out.append({"id": f"rayal-{cls}", "type": "brushlabels", "from_name": control["from_name"],
                    "to_name": control["to_name"], "original_width": int(width),
                    "original_height": int(height), "image_rotation": 0,
                    "value": {"format": "rle", "rle": mask_to_rle(region & (labels == cls)),
                              "brushlabels": [name]}})
    return out


def task_data(round_id: int, frame_id: str, region_id: int, rank: int, query_size: int,
              image: str) -> dict:
    """The ``data`` of the Label Studio task of one unit (see the module docstring)."""
    return {"image": image, "rayal_task": task_id(round_id, frame_id, region_id),
            "frame_id": frame_id, "region_id": int(region_id), "round": int(round_id),
            "rank": int(rank), "priority": 1.0 - int(rank) / max(int(query_size), 1)}


def resolve_task(data, current_round) -> str:
    """Label Studio task ``data`` -> rayal task id (see the module docstring); TaskError 422."""
    if not isinstance(data, dict):
        raise TaskError(422, "task data must be an object")
    if isinstance(data.get("rayal_task"), str):
        parse_task_id(data["rayal_task"])
        return data["rayal_task"]
    frame_id, region_id = data.get("frame_id"), data.get("region_id", -1)
    if not isinstance(frame_id, str) or isinstance(region_id, bool) or not isinstance(region_id, int):
        raise TaskError(422, "task data needs 'rayal_task' (a rayal task id) or 'frame_id' "
                        "(string) and 'region_id' (integer)")
    round_id = data.get("round", current_round)
    if isinstance(round_id, bool) or not isinstance(round_id, int):
        raise TaskError(422, f"task data of frame {frame_id!r}: no round (give 'round'; the pool "
                        "has no round yet)")
    return task_id(round_id, frame_id, region_id)


__all__ = ["parse_label_config", "results_to_mask", "prediction_results", "resolve_task", "task_data",
           "class_labels"]
