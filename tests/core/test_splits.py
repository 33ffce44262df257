"""Split names with a slice: parsing and the errors that name the text."""
import pytest

from rayal.core.splits import check_split, parse_split


@pytest.mark.parametrize("text, want", [
    ("val", ("val", None)),
    ("val[24:]", ("val", slice(24, None))),
    ("val[:24]", ("val", slice(None, 24))),
    ("test[-10:]", ("test", slice(-10, None))),
    ("val[3:7]", ("val", slice(3, 7))),
    ("my-split_2[:]", ("my-split_2", slice(None, None))),
])
def test_parse_split(text, want):
    assert parse_split(text) == want


@pytest.mark.parametrize("bad", ["val[24]", "val[a:]", "[3:]", "val[1:2:3]", "val[1:2", ""])
def test_malformed_splits_are_named(bad):
    with pytest.raises(ValueError, match="name\\[start:stop\\]"):
        parse_split(bad)
    with pytest.raises(ValueError, match="^train.val_split: "):
        check_split("train.val_split", bad)


def test_check_split_allows_none():
    check_split("train.val_split", None)
