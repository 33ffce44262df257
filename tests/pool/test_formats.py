"""Interchange formats through the one registry: export -> ingest round trips (coco,
labelstudio; png and parquet as before) give the labels the masks give, and bad items are
refused by name with nothing returned."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rayal.config import RayalConfig
from rayal.data import LabelError
from rayal.pool.coordinator import units_table
from rayal.pool.formats import (ExportRequest, IngestRequest, export_formats, get_exporter,
                                get_importer, import_formats)
from rayal.pool.labels import label_summaries
from rayal.pool.state import PoolState
from rayal.selection.base import ScoreTables

C = 3


@pytest.fixture
def setup(tmp_path, h, plugin):
    frames, masks = h.write_frames(tmp_path / "data", 4, size=(24, 32), num_classes=C)
    config = RayalConfig.model_validate({
        "output_dir": str(tmp_path / "run"),
        "data": {"source": "folder", "root": str(tmp_path / "data"), "num_classes": C,
                 "class_names": ["road", "car", "sky"]},
        "pool": {"unit": "patch", "project": "fmt", "state_dir": str(tmp_path / "state")}})
    scores = ScoreTables.from_dir(h.write_scores(tmp_path / "scores", 4, regions=16))
    state = PoolState("patch").register(frames)
    state, query = state.select("pool_test_top", {"level": "region"}, 6, 0, scores, 0, now=0.0)
    units = units_table(state, "queued", 0)
    return state, query, units, frames, masks, config, tmp_path


def rows(table):
    return sorted((r["frame_id"], r["region_id"], r["dominant_class"], tuple(r["pixel_counts"]))
                  for r in table.to_pylist())


def oracle(units, frames, config):
    return label_summaries(units, frames, unit="patch", data=config.data, scoring=config.scoring)


def export(fmt, setup, labels="oracle"):
    state, query, units, frames, masks, config, tmp = setup
    out = get_exporter(fmt)(ExportRequest(query, frames, str(tmp / fmt), 0, config, labels=labels))
    return out["files"][0]


def ingest(fmt, source, setup):
    _, _, units, frames, _, config, _ = setup
    return get_importer(fmt)(IngestRequest(str(source), units, frames, config))


def test_registry_lists_the_formats_in_its_key_error():
    assert export_formats()[0] == "parquet" and {"coco", "labelstudio"} <= set(export_formats())
    assert set(import_formats()) == {"png", "coco", "labelstudio"}
    with pytest.raises(KeyError, match="export formats: parquet, png|export formats: parquet"):
        get_exporter("yolo")
    with pytest.raises(KeyError, match="ingest formats: png, coco, labelstudio"):
        get_importer("parquet")


@pytest.mark.parametrize("fmt", ["coco", "labelstudio"])
def test_round_trip_gives_the_same_labels(setup, fmt):
    state, _, units, frames, _, config, tmp = setup
    path = export(fmt, setup)
    batch = ingest(fmt, path, setup)
    want = oracle(units, frames, config)
    assert batch.table.num_rows == 6 and not batch.missing and not batch.errors
    assert rows(batch.table) == rows(want.table)
    pooled = state.ingest(batch.table, round_id=0)
    assert pooled.status_counts(16)["labeled"] == 6
    assert rows_of_pool(pooled) == rows_of_pool(state.ingest(want.table, round_id=0))


def rows_of_pool(state):
    t = units_table(state, "labeled")
    return sorted(zip(*(t.column(c).to_pylist() for c in ("frame_id", "region_id", "dominant_class"))))


def test_png_ingest_and_parquet_export_through_the_registry(setup):
    _, _, units, frames, _, config, tmp = setup
    batch = ingest("png", tmp / "data" / "masks", setup)
    assert rows(batch.table) == rows(oracle(units, frames, config).table)
    path = export("parquet", setup, labels=None)
    assert path.endswith("round-0000.parquet")


def test_coco_file_is_proper_coco(setup):
    from pycocotools.coco import COCO

    doc = json.load(open(export("coco", setup)))
    assert [c["name"] for c in doc["categories"]] == ["road", "car", "sky"]
    assert len(doc["rayal_units"]) == 6 and doc["annotations"]
    api = COCO()
    api.dataset = doc
    api.createIndex()
    ann = doc["annotations"][0]
    assert api.annToMask(ann).sum() == ann["area"]
    empty = json.load(open(export("coco", setup, labels=None)))
    assert empty["annotations"] == [] and len(empty["rayal_units"]) == 6


def _edit(path, fn):
    doc = json.load(open(path))
    fn(doc)
    json.dump(doc, open(path, "w"))


@pytest.mark.parametrize("damage,error,match", [
    ("size", LabelError, "size 20x32 \\(HxW\\) does not match the frame's 24x32"),
    ("class", LabelError, "unknown class id 7"),
    ("unit", ValueError, "is not queued for labels"),
    ("image", ValueError, "unknown image_id 99")])
def test_coco_bad_items_are_refused_by_name(setup, damage, error, match):
    path = export("coco", setup)
    doc = json.load(open(path))
    victim = doc["images"][0]["rayal_frame_id"]

    def spoil(d):
        ann = d["annotations"][0]
        if damage == "size":
            d["images"][0]["height"] = 20
        elif damage == "class":
            ann["category_id"] = 7
        elif damage == "unit":
            ann["rayal_unit"]["region_id"] = 15 if ann["rayal_unit"]["region_id"] != 15 else 14
            queued = {r for a in d["annotations"] if a["image_id"] == ann["image_id"]
                      for r in [a["rayal_unit"]["region_id"]]}
            assert queued
        else:
            ann["image_id"] = 99
    _edit(path, spoil)
    with pytest.raises(error, match=match) as err:
        ingest("coco", path, setup)
    if damage in ("size", "class"):
        assert victim in str(err.value)


@pytest.mark.parametrize("damage,match", [
    ("size", "does not match the frame's 32x24"),
    ("label", "unknown label 'tree'"),
    ("unit", "is not queued for labels")])
def test_labelstudio_bad_items_are_refused_by_name(setup, damage, match):
    _, query, units, *_ = setup
    path = export("labelstudio", setup)
    tasks = json.load(open(path))
    queued = {(f, r) for f, r in zip(units.column("frame_id").to_pylist(),
                                     units.column("region_id").to_pylist())}
    task = tasks[0]
    result = task["annotations"][0]["result"][0]
    if damage == "size":
        result["original_width"] = 30
    elif damage == "label":
        result["value"]["brushlabels"] = ["tree"]
    else:
        free = next(r for r in range(16) if (task["data"]["frame_id"], r) not in queued)
        task["data"]["rayal_task"] = f"0.{free}.{task['data']['frame_id']}"
    json.dump(tasks, open(path, "w"))
    with pytest.raises((LabelError, ValueError), match=match) as err:
        ingest("labelstudio", path, setup)
    assert task["data"]["frame_id"] in str(err.value)
