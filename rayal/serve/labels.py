"""Label formats the service accepts, decoded to a frame-size class-id mask and validated as
``rayal pool ingest`` validates mask files (:func:`rayal.data.decode.decode_mask`: size against
the frame, class ids against ``data.num_classes``, lossless single-channel PNG).

* ``mask_png_base64``: a PNG of class ids, the frame's size (or the unit's bounding box);
* ``coco_rle``: a COCO RLE (``{"size": [H, W], "counts": str | [int]}``, pycocotools) with a
  ``category_id``, or a list of them; pixels outside every RLE are ``ignore_index``;
* ``labelstudio``: Label Studio annotation results (``brushlabels`` brush RLE or
  ``polygonlabels``), see :func:`rayal.pool.formats.ls_results.results_to_mask`.

Every error is a :class:`~rayal.serve.leases.TaskError` 422 naming the unit and the problem.
"""
from __future__ import annotations

import base64
import binascii

import numpy as np

from rayal.pool.tasks import TaskError

FORMATS = ("mask_png_base64", "coco_rle", "labelstudio")


def _png_mask(text: str, size, box, num_classes: int, ignore_index: int, unit: str) -> np.ndarray:
    from rayal.data import LabelError
    from rayal.data.decode import decode_mask

    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise TaskError(422, "mask_png_base64 is not valid base64", unit) from None
    try:   # the frame's size, or the unit's bounding box (as pool ingest takes region files)
        shape = decode_mask(data, num_classes=num_classes, ignore_index=ignore_index,
                            frame_id=unit).shape
        boxed = None if box is None else (box[2] - box[0], box[3] - box[1])
        if shape != tuple(size) and shape != boxed:
            raise TaskError(422, f"mask size {shape[0]}x{shape[1]} (HxW) matches neither the frame "
                            f"{size[0]}x{size[1]} nor the unit's box {boxed[0]}x{boxed[1]}", unit)
        expected = shape
        mask = decode_mask(data, num_classes=num_classes, ignore_index=ignore_index,
                           expected_size=expected, frame_id=unit)
    except LabelError as err:
        raise TaskError(422, err.reason if hasattr(err, "reason") else str(err), unit) from None
    if mask.shape == tuple(size):
        return mask
    full = np.full(size, ignore_index, mask.dtype)
    full[box[0]:box[2], box[1]:box[3]] = mask
    return full


def _coco_mask(value, size, num_classes: int, ignore_index: int, unit: str) -> np.ndarray:
    from pycocotools import mask as coco

    items = value if isinstance(value, list) else [value]
    out = np.full(size, ignore_index, np.int32)
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "counts" not in item or "size" not in item:
            raise TaskError(422, f"coco_rle[{i}] needs 'size' [H, W] and 'counts'", unit)
        cls = item.get("category_id", item.get("class_id"))
        if not isinstance(cls, int) or not 0 <= cls < num_classes:
            raise TaskError(422, f"coco_rle[{i}]: unknown class id {cls!r} (valid 0.."
                            f"{num_classes - 1})", unit)
        if [int(v) for v in item["size"]] != list(size):
            raise TaskError(422, f"coco_rle[{i}]: mask size {item['size'][0]}x{item['size'][1]} "
                            f"(HxW) does not match image size {size[0]}x{size[1]}", unit)
        rle = dict(size=[int(v) for v in item["size"]], counts=item["counts"])
        try:
            if isinstance(rle["counts"], list):
                rle = coco.frPyObjects(rle, *rle["size"])
            else:
                rle["counts"] = rle["counts"].encode()
            binary = coco.decode(rle).astype(bool)
        except Exception as err:   # noqa: BLE001 - pycocotools raises bare errors on bad input
            raise TaskError(422, f"coco_rle[{i}] does not decode: {err}", unit) from None
        if binary.shape != tuple(size) or (isinstance(item["counts"], list)
                                           and sum(item["counts"]) != size[0] * size[1]):
            raise TaskError(422, f"coco_rle[{i}]: counts do not cover {size[0]}x{size[1]} pixels",
                            unit)
        out[binary] = cls
    return out


def decode_label(body: dict, *, size, box, num_classes: int, ignore_index: int,
                 unit: str, class_names: list[str] | None = None) -> np.ndarray:
    """The posted label of one unit -> (H, W) int32 class ids of the frame (``ignore_index``
    where the label says nothing). ``size`` = frame (H, W); ``box`` = the unit's
    ``[y0, x0, y1, x1]`` (a PNG may be that box only); ``class_names``: Label Studio's label
    of each class (else the class id as a string)."""
    given = [f for f in FORMATS if body.get(f) is not None]
    if len(given) != 1:
        raise TaskError(422, f"give exactly one of {list(FORMATS)}, got {given or 'none'}", unit)
    fmt = given[0]
    if fmt == "mask_png_base64":
        if not isinstance(body[fmt], str):
            raise TaskError(422, "mask_png_base64 must be a string", unit)
        mask = _png_mask(body[fmt], size, box, num_classes, ignore_index, unit)
    elif fmt == "coco_rle":
        mask = _coco_mask(body[fmt], size, num_classes, ignore_index, unit)
    else:
        from rayal.pool.formats.ls_results import results_to_mask

        mask = results_to_mask(body[fmt], size=size, num_classes=num_classes,
                               ignore_index=ignore_index, class_names=class_names, unit=unit)
    return np.asarray(mask, np.int32)


def summarize_unit(mask: np.ndarray, region: np.ndarray, num_classes: int,
                   ignore_index: int) -> tuple[int, np.ndarray]:
    """(dominant class or -1, (C,) pixel counts) of the unit's pixels, as pool ingest counts."""
    from rayal.pool.labels import summarize

    dominant, counts = summarize(mask, num_classes, ignore_index, region.astype(np.int32), [1])
    return int(dominant[0]), counts[0]
