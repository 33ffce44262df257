import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayal.data import (
    FolderDataset,
    FrameRecord,
    SyntheticScenes,
    iter_manifest,
    manifest_num_rows,
    read_manifest,
    validate_manifest_schema,
    write_manifest,
)


def _table(n, prefix="/data/"):
    return pa.table(
        {
            "frame_id": [f"f{i:05d}" for i in range(n)],
            "uri": [f"{prefix}f{i:05d}.png" for i in range(n)],
            "mask_uri": [None if i % 2 else f"{prefix}m{i:05d}.png" for i in range(n)],
            "weight": list(range(n)),
        }
    )


def test_roundtrip_streams_three_row_groups(tmp_path, monkeypatch):
    uri = str(tmp_path / "m.parquet")
    write_manifest(_table(2500), uri, row_group_size=1000)
    assert pq.ParquetFile(uri).metadata.num_row_groups == 3
    batches = list(iter_manifest(uri, batch_size=700))
    assert len(batches) >= 4 and all(b.num_rows <= 700 for b in batches)
    back = pa.Table.from_batches(batches)
    assert back.equals(_table(2500).cast(back.schema))
    only = next(iter_manifest(uri, batch_size=10, columns=["frame_id"]))
    assert only.schema.names == ["frame_id"] and only.num_rows == 10
    # num_rows must come from the footer: reading data pages is forbidden here
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", lambda *a, **k: pytest.fail("read data"))
    monkeypatch.setattr(pq.ParquetFile, "read", lambda *a, **k: pytest.fail("read data"))
    assert manifest_num_rows(uri) == 2500


def test_relative_uris_resolve_against_manifest_dir(tmp_path):
    table = pa.table(
        {
            "frame_id": ["a", "b", "c", "d"],
            "uri": ["img/a.png", "/abs/b.png", "s3://bucket/c.png", "d.jpg"],
            "mask_uri": ["lbl/a.png", None, "gs://b/c.png", "/abs/d.png"],
        }
    )
    uri = str(tmp_path / "sub" / "pool.parquet")
    write_manifest(table, uri)
    got = read_manifest(uri)
    base = str(tmp_path / "sub")
    assert got.column("uri").to_pylist() == [
        os.path.join(base, "img/a.png"),
        "/abs/b.png",
        "s3://bucket/c.png",
        os.path.join(base, "d.jpg"),
    ]
    assert got.column("mask_uri").to_pylist() == [os.path.join(base, "lbl/a.png"), None, "gs://b/c.png", "/abs/d.png"]


def test_dataset_directory(tmp_path):
    d = tmp_path / "pool"
    d.mkdir()
    pq.write_table(_table(30, prefix="x/").slice(0, 10), d / "part-0.parquet")
    pq.write_table(_table(30, prefix="x/").slice(10, 20), d / "part-1.parquet")
    assert manifest_num_rows(str(d)) == 30
    rows = [r for b in iter_manifest(str(d), batch_size=7) for r in b.column("uri").to_pylist()]
    assert len(rows) == 30 and all(r.startswith(str(d) + os.sep + "x/") for r in rows)


def test_schema_errors(tmp_path):
    uri = str(tmp_path / "bad.parquet")
    pq.write_table(pa.table({"frame_id": ["a"], "path": ["x.png"]}), uri)
    with pytest.raises(ValueError, match="missing required column 'uri'"):
        validate_manifest_schema(uri)
    with pytest.raises(ValueError, match="'uri'"):
        next(iter_manifest(uri))
    pq.write_table(pa.table({"frame_id": [1], "uri": ["x.png"]}), uri)
    with pytest.raises(ValueError, match="'frame_id' must be string"):
        validate_manifest_schema(uri)
    with pytest.raises(FileNotFoundError, match="nope"):
        manifest_num_rows(str(tmp_path / "nope.parquet"))
    ok = write_manifest(_table(2), str(tmp_path / "ok.parquet"))
    with pytest.raises(ValueError, match="no column"):
        next(iter_manifest(ok, columns=["nope"]))


def test_write_rejects_bad_tables(tmp_path):
    uri = str(tmp_path / "m.parquet")
    with pytest.raises(ValueError, match="not unique.*'a'"):
        write_manifest(pa.table({"frame_id": ["a", "b", "a"], "uri": ["1", "2", "3"]}), uri)
    with pytest.raises(ValueError, match="'uri' has 1 null"):
        write_manifest(pa.table({"frame_id": ["a", "b"], "uri": ["1", None]}), uri)
    assert not os.path.exists(uri)


def test_write_from_records_and_folder(tmp_path):
    recs = [FrameRecord("a", "/x/a.png", None), FrameRecord("b", "/x/b.png", "/y/b.png")]
    uri = write_manifest(recs, str(tmp_path / "r.parquet"))
    t = read_manifest(uri)
    assert t.column("frame_id").to_pylist() == ["a", "b"] and t.column("mask_uri").to_pylist() == [None, "/y/b.png"]
    scenes = SyntheticScenes(4, height=24, width=32)
    ds = FolderDataset(scenes.write_folder(str(tmp_path / "syn")), num_classes=8, ignore_index=255)
    uri = write_manifest(ds.to_manifest(), str(tmp_path / "syn.parquet"))
    assert manifest_num_rows(uri) == 4 and read_manifest(uri).equals(ds.to_manifest().cast(read_manifest(uri).schema))
