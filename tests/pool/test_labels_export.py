"""Label summaries from mask files (validation before anything changes) and query export."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from rayal.config.sections import DataConfig, ScoringConfig
from rayal.data import LabelError, SYNTHETIC_CLASSES, grid_regions, resize_mask, slic_regions
from rayal.pool.export import export_query, rle_decode, rle_encode
from rayal.pool.labels import label_summaries, summarize
from rayal.pool.state import PoolState
from rayal.selection.base import QUERY_SCHEMA, ScoreTables

C = 3


@pytest.fixture
def setup(tmp_path, h, plugin):
    frames, masks = h.write_frames(tmp_path / "data", 4, size=(24, 32), num_classes=C)
    data = DataConfig(source="folder", root=str(tmp_path / "data"), num_classes=C, ignore_index=255)
    scores = ScoreTables.from_dir(h.write_scores(tmp_path / "scores", 4, regions=16))
    state = PoolState("patch").register(frames)
    state, query = state.select("pool_test_top", {"level": "region"}, 6, 0, scores, 0, now=0.0)
    return state, query, frames, masks, data, tmp_path


def expected_counts(mask, regions, r):
    return np.bincount(mask[regions == r], minlength=C)


def test_summaries_of_queued_patches(setup):
    state, query, frames, masks, data, tmp = setup
    batch = label_summaries(query, frames, unit="patch", data=data, scoring=ScoringConfig(),
                            masks_dir=str(tmp / "data" / "masks"))
    assert batch.table.num_rows == 6 and not batch.missing and not batch.errors
    grid = grid_regions(24, 32, 4, 4)
    for row in batch.table.to_pylist():
        want = expected_counts(masks[row["frame_id"]], grid, row["region_id"])
        assert row["pixel_counts"] == want.tolist() and row["dominant_class"] == int(want.argmax())
    labelled = state.ingest(batch.table, round_id=0)
    assert labelled.status_counts(16)["labeled"] == 6
    assert labelled.ingest(batch.table) is labelled


@pytest.mark.parametrize("damage,match", [
    ("size", "mask size 20x32 \\(HxW\\) does not match image size 24x32"),
    ("ids", "unknown class ids \\[7\\]")])
def test_bad_mask_rejects_the_batch_naming_the_frame(setup, damage, match):
    state, query, frames, masks, data, tmp = setup
    bad_dir = tmp / "bad"
    shutil.copytree(tmp / "data" / "masks", bad_dir)
    victim = sorted(set(query.column("frame_id").to_pylist()))[-1]
    mask = masks[victim].copy()
    if damage == "size":
        mask = mask[:20]
    else:
        mask[3, 3] = 7
    Image.fromarray(mask).save(bad_dir / f"{victim}.png")
    digest = state.digest()
    with pytest.raises(LabelError, match=match) as err:
        label_summaries(query, frames, unit="patch", data=data, scoring=ScoringConfig(),
                        masks_dir=str(bad_dir))
    assert err.value.frame_id == victim and f"mask of frame {victim}" in str(err.value)
    assert state.digest() == digest                       # nothing was ingested
    batch = label_summaries(query, frames, unit="patch", data=data, scoring=ScoringConfig(),
                            masks_dir=str(bad_dir), on_error="collect")
    assert [e[0] for e in batch.errors] == [victim]
    assert victim not in batch.table.column("frame_id").to_pylist()


def test_per_region_mask_files(setup):
    state, query, frames, masks, data, tmp = setup
    rdir = tmp / "regions"
    rdir.mkdir()
    grid = grid_regions(24, 32, 4, 4)
    (f0, r0), (f1, r1) = [(row["frame_id"], row["region_id"]) for row in query.to_pylist()[:2]]
    ys, xs = np.nonzero(grid == r0)
    Image.fromarray(masks[f0][ys.min():ys.max() + 1, xs.min():xs.max() + 1]).save(rdir / f"{f0}__{r0}.png")
    Image.fromarray(masks[f1]).save(rdir / f"{f1}__{r1}.png")         # full-frame size
    batch = label_summaries(query, frames, unit="patch", data=data, scoring=ScoringConfig(),
                            masks_dir=str(rdir))
    got = {(r["frame_id"], r["region_id"]): r["pixel_counts"] for r in batch.table.to_pylist()}
    assert got == {(f0, r0): expected_counts(masks[f0], grid, r0).tolist(),
                   (f1, r1): expected_counts(masks[f1], grid, r1).tolist()}
    assert len(batch.missing) == 4                        # the other queued units: no mask yet
    Image.fromarray(masks[f0][:5, :5]).save(rdir / f"{f0}__{r0}.png")
    with pytest.raises(LabelError, match="matches neither the frame 24x32"):
        label_summaries(query, frames, unit="patch", data=data, scoring=ScoringConfig(),
                        masks_dir=str(rdir))


def test_image_pool_oracle_ignores_void(tmp_path, h):
    frames, masks = h.write_frames(tmp_path, 2, size=(10, 12), num_classes=C)
    mask = masks["f001"].copy()
    mask[:5] = 255
    Image.fromarray(mask).save(tmp_path / "masks" / "f001.png")
    units = frames.select(["frame_id"]).append_column("region_id", [[-1, -1]])
    data = DataConfig(source="folder", root=str(tmp_path), num_classes=C, ignore_index=255)
    batch = label_summaries(units, frames, unit="image", data=data, scoring=ScoringConfig())
    rows = {r["frame_id"]: r for r in batch.table.to_pylist()}
    assert rows["f001"]["pixel_counts"] == np.bincount(mask[5:].ravel(), minlength=C).tolist()
    assert sum(rows["f000"]["pixel_counts"]) == 120
    dom, counts = summarize(np.full((4, 4), 255), C, 255)
    assert dom.tolist() == [-1] and counts.sum() == 0


def test_synthetic_oracle():
    frames = pa.Table.from_pylist([{"frame_id": "s0", "uri": "synthetic://0/0"}])
    data = DataConfig(num_classes=len(SYNTHETIC_CLASSES))
    units = frames.select(["frame_id"]).append_column("region_id", [[-1]])
    batch = label_summaries(units, frames, unit="image", data=data, scoring=ScoringConfig())
    assert sum(batch.table.column("pixel_counts")[0].as_py()) == 96 * 128


def test_rle_round_trip():
    rng = np.random.default_rng(0)
    for mask in (rng.random((7, 9)) < 0.5, np.ones((3, 4), bool), np.zeros((3, 4), bool)):
        assert (rle_decode(rle_encode(mask), mask.shape) == mask).all()
    assert rle_encode(np.array([[1, 0], [1, 0]], bool)) == [0, 2, 2]


def test_export_patch_query(setup):
    state, query, frames, masks, data, tmp = setup
    out = export_query(query, frames, str(tmp / "out"), round_id=0, unit="patch",
                       scoring=ScoringConfig(), data=data, mask_format="both")
    table = pq.read_table(out["parquet"])
    lines = [json.loads(line) for line in open(out["jsonl"])]
    assert table.num_rows == len(lines) == 6 and out["rows"] == 6
    grid = grid_regions(24, 32, 4, 4)
    for row in lines:
        region = grid == row["region_id"]
        assert (rle_decode(row["rle"], (row["height"], row["width"])) == region).all()
        ys, xs = np.nonzero(region)
        assert row["bbox"] == [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1   # pixel edges
        assert row["polygon"] == [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
        assert row["uri"].endswith(f"{row['frame_id']}.png") and row["error"] is None
    assert table.column("score").to_pylist() == query.column("score").to_pylist()


def test_export_superpixels_at_scoring_size_and_bad_frame(tmp_path, h):
    frames, _ = h.write_frames(tmp_path, 2, size=(24, 32), num_classes=C)
    data = DataConfig(source="folder", root=str(tmp_path), num_classes=C, image_size=(12, 16))
    scoring = ScoringConfig(units=["superpixel"], superpixel={"n_segments": 6})
    state = PoolState("superpixel").register(frames).register(
        {"frame_id": ["gone"], "uri": [str(tmp_path / "gone.png")]})
    query = pa.Table.from_pylist([
        {"rank": 0, "frame_id": "f000", "unit": "superpixel", "region_id": 1, "score": 1.0,
         "reason": "r", "class_id": -1, "cluster": -1, "cost": 1.0},
        {"rank": 1, "frame_id": "gone", "unit": "superpixel", "region_id": 0, "score": 0.5,
         "reason": "r", "class_id": -1, "cluster": -1, "cost": 1.0}], schema=QUERY_SCHEMA)
    out = export_query(query, state.frames, str(tmp_path / "out"), round_id=2, unit="superpixel",
                       scoring=scoring, data=data)
    ok, bad = pq.read_table(out["parquet"]).to_pylist()
    image = np.asarray(Image.open(tmp_path / "images" / "f000.png").resize((16, 12), Image.BILINEAR))
    want = resize_mask(slic_regions(image, n_segments=6), (24, 32)) == 1
    assert (ok["height"], ok["width"]) == (24, 32)
    assert (rle_decode(ok["rle"], (24, 32)) == want).all()
    assert bad["rle"] is None and "frame gone" in bad["error"] and "missing file" in bad["error"]


# --- one rule for delivered mask files; EXIF-rotated frames -------------------------------------
def test_ingest_reads_upper_case_extensions_and_names_every_file_it_does_not_use(tmp_path, h):
    frames, masks = h.write_frames(tmp_path, 3, size=(10, 12), num_classes=C)
    units = frames.select(["frame_id"]).append_column("region_id", [[-1, -1, -1]])
    data = DataConfig(source="folder", root=str(tmp_path), num_classes=C, ignore_index=255)
    d = tmp_path / "delivered"
    d.mkdir()
    Image.fromarray(masks["f000"]).save(d / "f000.PNG")            # upper case: a PNG mask
    Image.fromarray(masks["f001"]).save(d / "f001.jpg", quality=90)  # lossy: refused by name
    Image.fromarray(masks["f002"]).save(d / "other.png")            # no such queued frame
    (d / "notes.txt").write_text("round 0")
    (d / ".DS_Store").write_bytes(b"\0")
    batch = label_summaries(units, frames, unit="image", data=data, scoring=ScoringConfig(),
                            masks_dir=str(d))
    rows = {r["frame_id"]: r for r in batch.table.to_pylist()}
    assert list(rows) == ["f000"]
    assert rows["f000"]["pixel_counts"] == np.bincount(masks["f000"].ravel(), minlength=C).tolist()
    assert sorted(batch.missing) == [("f001", -1), ("f002", -1)]
    refused = dict(batch.refused)
    assert set(refused) == {"f001.jpg", "other.png", "notes.txt"}
    assert "JPEG" in refused["f001.jpg"] and "lossy" in refused["f001.jpg"]
    assert "no queued unit" in refused["other.png"] and "not a mask image" in refused["notes.txt"]


def test_two_masks_of_one_frame_differing_in_case_are_refused_naming_both(tmp_path, h):
    frames, masks = h.write_frames(tmp_path, 1, size=(10, 12), num_classes=C)
    units = frames.select(["frame_id"]).append_column("region_id", [[-1]])
    data = DataConfig(source="folder", root=str(tmp_path), num_classes=C, ignore_index=255)
    d = tmp_path / "delivered"
    d.mkdir()
    Image.fromarray(masks["f000"]).save(d / "f000.png")
    Image.fromarray(masks["f000"]).save(d / "f000.PNG")
    with pytest.raises(ValueError, match=r"duplicate mask stem 'f000'.*f000\.PNG.*f000\.png|"
                                         r"duplicate mask stem 'f000'.*f000\.png.*f000\.PNG"):
        label_summaries(units, frames, unit="image", data=data, scoring=ScoringConfig(),
                        masks_dir=str(d))


def _exif_frame(path, upright: np.ndarray) -> None:
    """Save ``upright`` stored sideways with EXIF Orientation=6 (what a phone writes)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(path, quality=95,
                                                                       exif=exif.tobytes())


def test_ingest_and_export_use_the_upright_size_of_exif_rotated_frames(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    _exif_frame(tmp_path / "images" / "p0.jpg", np.full((24, 32, 3), 128, np.uint8))
    mask = np.zeros((24, 32), np.uint8)
    mask[12:] = 1
    Image.fromarray(mask).save(tmp_path / "masks" / "p0.png")        # drawn on the upright view
    frames = pa.Table.from_pylist([{"frame_id": "p0", "uri": str(tmp_path / "images" / "p0.jpg"),
                                    "mask_uri": None}])
    data = DataConfig(source="folder", root=str(tmp_path), num_classes=C, ignore_index=255)
    units = pa.table({"frame_id": ["p0"], "region_id": pa.array([-1], pa.int32())})
    batch = label_summaries(units, frames, unit="image", data=data, scoring=ScoringConfig(),
                            masks_dir=str(tmp_path / "masks"))
    assert batch.table.column("pixel_counts")[0].as_py() == [12 * 32, 12 * 32, 0]
    query = pa.Table.from_pylist([
        {"rank": 0, "frame_id": "p0", "unit": "patch", "region_id": 0, "score": 1.0,
         "reason": "r", "class_id": -1, "cluster": -1, "cost": 1.0}], schema=QUERY_SCHEMA)
    out = export_query(query, frames, str(tmp_path / "out"), round_id=0, unit="patch",
                       scoring=ScoringConfig(grid=[2, 2]), data=data, mask_format="rle")
    row = json.loads(open(out["jsonl"]).readline())
    assert (row["height"], row["width"]) == (24, 32)              # upright, not 32x24
    assert row["bbox"] == [0, 0, 12, 16]
