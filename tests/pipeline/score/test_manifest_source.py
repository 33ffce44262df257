"""ManifestDatasource: exact-size blocks across row groups and files, limit honoured."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from rayal.pipeline.score.manifest_source import ManifestDatasource


def _write(path, start, n, row_group_size):
    ids = [f"f{i:03d}" for i in range(start, start + n)]
    pq.write_table(pa.table({"frame_id": ids, "uri": [f"{i}.png" for i in ids]}), path,
                   row_group_size=row_group_size)


def _read_all(source: ManifestDatasource) -> list[pa.Table]:
    blocks = []
    for task in source.get_read_tasks(parallelism=1):
        blocks.extend(task())  # a ReadTask is callable: runs its read function
    return blocks


def test_blocks_are_batch_sized_across_row_groups(tmp_path):
    _write(tmp_path / "m.parquet", 0, 30, row_group_size=10)
    source = ManifestDatasource(str(tmp_path / "m.parquet"), batch_size=4, rows_per_task=12)
    tasks = source.get_read_tasks(parallelism=1)
    assert [t.metadata.num_rows for t in tasks] == [12, 12, 6]
    blocks = _read_all(source)
    assert [b.num_rows for b in blocks] == [4, 4, 4, 4, 4, 4, 4, 2]
    ids = pa.concat_tables(blocks).column("frame_id").to_pylist()
    assert ids == [f"f{i:03d}" for i in range(30)]


def test_limit_and_directory_manifest(tmp_path):
    (tmp_path / "dir").mkdir()
    _write(tmp_path / "dir" / "part-0.parquet", 0, 7, row_group_size=3)
    _write(tmp_path / "dir" / "part-1.parquet", 7, 7, row_group_size=3)
    source = ManifestDatasource(str(tmp_path / "dir"), batch_size=5, limit=11)
    assert source.num_rows == 11
    ids = pa.concat_tables(_read_all(source)).column("frame_id").to_pylist()
    assert ids == [f"f{i:03d}" for i in range(11)]


def test_relative_uris_resolve_against_the_manifest_directory(tmp_path):
    """A directory manifest resolves against the directory itself, a file against its folder."""
    (tmp_path / "pool").mkdir()
    table = pa.table({"frame_id": ["a", "b"], "uri": ["img/a.png", "/abs/b.png"]})
    pq.write_table(table, tmp_path / "pool" / "part-0.parquet")
    for uri, base in ((tmp_path / "pool", tmp_path / "pool"),
                      (tmp_path / "pool" / "part-0.parquet", tmp_path / "pool")):
        uris = pa.concat_tables(_read_all(ManifestDatasource(str(uri), batch_size=8))).column("uri")
        assert uris.to_pylist() == [str(base / "img" / "a.png"), "/abs/b.png"]
