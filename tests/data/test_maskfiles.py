"""The one rule for mask files, used by folder datasets and pool ingest."""
import pytest

from rayal.data.maskfiles import index_mask_files, mask_file_status


@pytest.mark.parametrize("name,stem,usable", [
    ("f001.png", "f001", True), ("f001.PNG", "f001", True), ("a.b.Tiff", "a.b", True),
    ("F001.bmp", "F001", True), ("f001.jpg", "f001", False), ("f001.JPEG", "f001", False),
    ("f001.webp", "f001", False), ("notes.txt", "notes", False), ("README", "README", False)])
def test_extensions_are_case_insensitive_and_stems_keep_their_case(name, stem, usable):
    got_stem, reason = mask_file_status(name)
    assert got_stem == stem and (reason is None) == usable


def test_lossy_files_are_refused_with_the_reason_and_others_listed():
    files = [(n, f"/d/{n}") for n in ("a.PNG", "b.jpg", "c.webp", "d.txt", ".DS_Store", "e.png")]
    got = index_mask_files(files, "/d")
    assert got.usable == {"a": "/d/a.PNG", "e": "/d/e.png"}
    reasons = {name: reason for _, name, reason in got.refused}
    assert set(reasons) == {"b.jpg", "c.webp", "d.txt"}          # hidden files: skipped
    assert reasons["b.jpg"].startswith("JPEG mask: lossy") and "save it as PNG" in reasons["b.jpg"]
    assert reasons["c.webp"].startswith("WebP mask: lossy") and "not a mask image" in reasons["d.txt"]
    assert got.lossy("b") == "b.jpg" and got.lossy("d") is None and got.lossy("a") is None


def test_one_stem_twice_names_both_files():
    with pytest.raises(ValueError, match=r"duplicate mask stem 'a' in /d: a\.png and a\.PNG"):
        index_mask_files([("a.png", "/d/a.png"), ("a.PNG", "/d/a.PNG")], "/d")
