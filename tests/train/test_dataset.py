import numpy as np
import pyarrow as pa
import pytest

from rayal.data.splits import labelled_split
from rayal.train.dataset import LabelSpec, TrainingSet, sparse_mask, specs_from_units

IGN = 255
GT = np.array([[0, 1, 1, 2],
               [0, 1, 2, 2],
               [3, 3, 2, IGN]], np.uint8)
REGIONS = np.array([[0, 0, 1, 1],
                    [0, 0, 1, 1],
                    [2, 2, 3, 3]], np.int32)


def test_full_frame_is_the_ground_truth():
    assert np.array_equal(sparse_mask(GT, LabelSpec("f"), None, IGN), GT)


def test_region_pixels_keep_true_labels_and_ignore_the_rest():
    out = sparse_mask(GT, LabelSpec("f", "full", (1, 3)), REGIONS, IGN)
    expected = np.array([[IGN, IGN, 1, 2],
                         [IGN, IGN, 2, 2],
                         [IGN, IGN, 2, IGN]], np.uint8)
    assert np.array_equal(out, expected)


def test_dominant_label_fills_the_region_and_void_regions_stay_ignored():
    out = sparse_mask(GT, LabelSpec("f", "dominant", (0, 2, 3), (1, 3, -1)), REGIONS, IGN)
    expected = np.array([[1, 1, IGN, IGN],
                         [1, 1, IGN, IGN],
                         [3, 3, IGN, IGN]], np.uint8)
    assert np.array_equal(out, expected)


def test_points_label_single_pixels_only():
    out = sparse_mask(GT, LabelSpec("f", "points", points=((1, 2, 2), (0, 0, 0))), None, IGN)
    assert (out != IGN).sum() == 2 and out[1, 2] == 2 and out[0, 0] == 0


def test_bad_specs_name_the_frame():
    with pytest.raises(ValueError, match="frame f7"):
        LabelSpec("f7", "dominant", (1, 2), (0,))
    with pytest.raises(ValueError, match="frame f8"):
        LabelSpec("f8", "scribble")
    with pytest.raises(ValueError, match="frame f9: region map"):
        sparse_mask(GT, LabelSpec("f9", "full", (1,)), REGIONS[:2], IGN)


def test_specs_from_units_by_unit_kind():
    units = pa.table({"frame_id": ["b", "a", "b"], "region_id": pa.array([4, 0, 2], pa.int32()),
                      "dominant_class": pa.array([3, 1, -1], pa.int16())})
    sp = specs_from_units(units, "superpixel")
    assert [s.frame_id for s in sp] == ["a", "b"]
    assert sp[1] == LabelSpec("b", "dominant", (4, 2), (3, -1))
    patches = specs_from_units(units, "patch")
    assert patches[1] == LabelSpec("b", "full", (4, 2))
    images = specs_from_units(units.slice(0, 2), "image")
    assert images == [LabelSpec("a"), LabelSpec("b")]


def test_training_set_sparse_superpixels_and_seeded_augmentation(tiny):
    config = tiny(augment={"crop": [32, 32], "flip": True, "brightness": 0.2})
    config.scoring.superpixel.n_segments = 20
    split = labelled_split(config.data, "train")
    spec = LabelSpec("syn_0000001", "dominant", (0, 3), (2, 5))
    ts = TrainingSet(split, [spec], unit="superpixel", scoring=config.scoring,
                     augment_config=config.train.augment, seed=7)
    image, mask = ts.pair(0)
    assert set(np.unique(mask)) <= {2, 5, IGN}
    assert 0 < (mask != IGN).sum() < mask.size
    x0, y0 = ts[0]
    x1, y1 = ts[0]
    assert x0.shape == (3, 32, 32) and y0.shape == (32, 32) and float(x0.max()) <= 1.0
    assert np.array_equal(x0.numpy(), x1.numpy()) and np.array_equal(y0.numpy(), y1.numpy())
    ts.set_epoch(1)
    x2, _ = ts[0]
    assert not np.array_equal(x0.numpy(), x2.numpy())   # another epoch, another crop/flip


def test_pseudo_labels_are_extra_items(tiny):
    config = tiny()
    split = labelled_split(config.data, "train")
    pseudo = {"syn_0000005": np.full((48, 64), IGN, np.uint8)}
    pseudo["syn_0000005"][0, 0] = 4
    ts = TrainingSet(split, [LabelSpec("syn_0000000")], pseudo=pseudo)
    assert ts.frame_ids == ["syn_0000000", "syn_0000005"]
    assert ts.labelled_pixels() == 48 * 64 + 1
