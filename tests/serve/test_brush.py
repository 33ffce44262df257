"""Brush RLE (Label Studio's ``brushlabels`` format) and Label Studio results -> masks."""
from __future__ import annotations

import numpy as np
import pytest

from rayal.pool.formats.brush import BrushError, decode, encode, mask_to_rle, rle_to_mask
from rayal.pool.formats.ls_results import parse_label_config, prediction_results, results_to_mask
from rayal.pool.tasks import TaskError

# written by label_studio_sdk 2.1.2 (label_studio_sdk.converter.brush.mask2rle / encode_rle)
SDK_MASK_3x5 = [0, 0, 0, 60, 57, 27, 254, 23, 0, 183, 255, 132, 192, 35, 255, 0]
SDK_MASK_6x7 = [0, 0, 0, 168, 57, 27, 254, 35, 0, 191, 255, 108, 2, 255, 253, 176, 11, 255,
                246, 192, 47, 255, 225, 240, 0]
SDK_VALUES = [0, 0, 0, 7, 57, 27, 252, 64, 160, 3, 194, 18, 0, 8]
CONFIG = ('<View><Image name="image" value="$image"/><BrushLabels name="tag" toName="image">'
          '<Label value="road"/><Label value="car"/><Label value="sky"/></BrushLabels></View>')


def _same_stream(mine: list[int], sdk: list[int]) -> bool:
    """The SDK pads with one more zero byte when the stream is already byte-aligned."""
    return sdk[:len(mine)] == mine and not any(sdk[len(mine):]) and len(sdk) - len(mine) <= 1


def test_matches_label_studio_sdk_streams():
    m = np.zeros((3, 5), bool)
    m[1, 1:4] = True
    m[2, 4] = True
    m2 = np.zeros((6, 7), bool)
    m2[1:5, 2:6] = True
    assert _same_stream(mask_to_rle(m), SDK_MASK_3x5) and _same_stream(mask_to_rle(m2), SDK_MASK_6x7)
    assert (rle_to_mask(SDK_MASK_3x5, 3, 5) == m).all() and (rle_to_mask(SDK_MASK_6x7, 6, 7) == m2).all()
    values = np.array([5, 5, 5, 7, 9, 9, 1])
    assert _same_stream(encode(values), SDK_VALUES) and (decode(SDK_VALUES) == values).all()


def test_round_trip_long_runs_and_literal_chunks():
    rng = np.random.default_rng(0)
    big = np.zeros((300, 400), bool)          # runs over 2**16 values are split
    big[150:, 7:] = True
    assert (rle_to_mask(mask_to_rle(big), 300, 400) == big).all()
    noisy = rng.random((37, 91)) > 0.5
    assert (rle_to_mask(mask_to_rle(noisy), 37, 91) == noisy).all()
    # a literal chunk of three words, as Label Studio's JavaScript encoder writes them
    bits = f"{3:032b}{7:05b}" + "".join(f"{s - 1:04b}" for s in (3, 4, 8, 16))
    bits += "0" + "00" + f"{2:03b}" + "".join(f"{v:08b}" for v in (10, 20, 30))
    bits += "0" * (-len(bits) % 8)
    stream = [int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)]
    assert decode(stream).tolist() == [10, 20, 30]


@pytest.mark.parametrize("stream, expected, text", [
    (SDK_MASK_3x5, 6 * 5 * 4, "the image needs 120"),
    (SDK_MASK_3x5[:9], 60, "ends early"),
    ([1, 2, 3], None, "at least 7 byte values"),
    ([0, 0, 0, 60, 57, 27, 999, 1], None, "(0..255)"),
    ("abc", None, "list of"),
])
def test_bad_streams_are_named(stream, expected, text):
    with pytest.raises(BrushError, match=None) as err:
        decode(stream, expected=expected)
    assert text in str(err.value)


def test_results_to_mask_and_back():
    control = parse_label_config(CONFIG)["brush"]
    labels = np.zeros((6, 7), np.uint8)
    labels[:, 4:] = 2
    region = np.zeros((6, 7), bool)
    region[:, 3:] = True
    results = prediction_results(labels, region, control, ["road", "car", "sky"])
    assert [r["value"]["brushlabels"] for r in results] == [["road"], ["sky"]]
    mask = results_to_mask(results, size=(6, 7), num_classes=3, ignore_index=255,
                           class_names=["road", "car", "sky"], unit="0.1.f")
    assert (mask[region] == labels[region]).all() and (mask[~region] == 255).all()
    poly = [{"type": "polygonlabels", "original_width": 7, "original_height": 6,
             "value": {"points": [[0, 0], [100, 0], [100, 50], [0, 50]], "polygonlabels": ["car"]}}]
    mask = results_to_mask({"result": poly}, size=(6, 7), num_classes=3, ignore_index=255,
                           class_names=["road", "car", "sky"], unit="u")
    assert (mask[:3] == 1).all() and (mask[3:] == 255).all()


@pytest.mark.parametrize("result, text", [
    ({"original_width": 8}, "does not match the frame's 7x6"),
    ({"value": {"format": "rle", "rle": [1, 2, 3], "brushlabels": ["car"]}}, "at least 7 byte"),
    ({"value": {"format": "rle", "rle": SDK_MASK_6x7, "brushlabels": ["cat"]}}, "unknown label 'cat'"),
    ({"value": {"format": "rle", "rle": SDK_MASK_6x7, "brushlabels": []}}, "exactly one label"),
    ({"value": {"format": "rle", "brushlabels": ["car"]}}, "needs value.rle"),
    ({"type": "choices"}, "no brushlabels or polygonlabels result"),
])
def test_bad_results_are_named(result, text):
    base = {"type": "brushlabels", "original_width": 7, "original_height": 6,
            "value": {"format": "rle", "rle": SDK_MASK_6x7, "brushlabels": ["car"]}}
    with pytest.raises(TaskError) as err:
        results_to_mask([{**base, **result}], size=(6, 7), num_classes=3, ignore_index=255,
                        class_names=["road", "car", "sky"], unit="0.1.f")
    assert err.value.status == 422 and text in err.value.message and err.value.unit == "0.1.f"


def test_label_config_without_segmentation_is_refused():
    with pytest.raises(TaskError, match="no <BrushLabels>"):
        parse_label_config('<View><Image name="i" value="$image"/><Choices name="c" toName="i"/></View>')
    with pytest.raises(TaskError, match="not valid XML"):
        parse_label_config("<View>")
