import os

import pyarrow.fs as pafs
import pytest

from rayal.data import FrameError, exists, join_uri, list_files, makedirs, read_bytes, resolve_filesystem, write_bytes
from rayal.data.io import has_scheme, parent_uri


def test_resolve_plain_and_file_uri(tmp_path):
    fs, path = resolve_filesystem(str(tmp_path / "a.png"))
    assert isinstance(fs, pafs.LocalFileSystem) and path == str(tmp_path / "a.png")
    fs, path = resolve_filesystem("file:///tmp/a%20b/c.png")
    assert isinstance(fs, pafs.LocalFileSystem) and path == "/tmp/a b/c.png"
    _, rel = resolve_filesystem("rel/x.png")
    assert rel == os.path.abspath("rel/x.png")


def test_object_store_paths_without_network():
    fs, path = resolve_filesystem("s3://bucket/dir/x.png?region=us-east-1")
    assert fs.type_name == "s3" and path == "bucket/dir/x.png"
    assert resolve_filesystem("s3://bucket/other.png?region=us-east-1")[0] is fs  # cached per bucket


def test_fsspec_fallback_roundtrip():
    pytest.importorskip("fsspec")
    uri = "memory://rayal-test/dir/blob.bin"
    write_bytes(uri, b"hello")
    assert read_bytes(uri) == b"hello"
    assert exists(uri)


def test_read_write_list_local(tmp_path):
    target = join_uri(str(tmp_path), "sub", "deeper", "x.bin")
    write_bytes(target, b"\x00\x01")
    assert read_bytes("file://" + target) == b"\x00\x01"
    makedirs(str(tmp_path / "empty" / "dir"))
    assert list_files(str(tmp_path / "sub" / "deeper")) == [("x.bin", target)]
    with pytest.raises(FileNotFoundError, match="nope"):
        list_files(str(tmp_path / "nope"))


def test_missing_file_is_frame_error(tmp_path):
    with pytest.raises(FrameError) as ei:
        read_bytes(str(tmp_path / "gone.png"), frame_id="f7")
    assert ei.value.reason == "missing file" and ei.value.frame_id == "f7"
    assert "gone.png" in str(ei.value) and "f7" in str(ei.value)


def test_join_and_parent():
    assert join_uri("s3://b/x/", "/y", "z.png") == "s3://b/x/y/z.png"
    assert join_uri("/a", "b") == os.path.join("/a", "b")
    assert parent_uri("gs://b/p/m.parquet") == "gs://b/p"
    assert parent_uri("/a/b/m.parquet") == "/a/b"
    assert has_scheme("s3://x") and not has_scheme("/x") and not has_scheme("C:\\x")
