import numpy as np
import pytest

from rayal.data import SYNTHETIC_CLASSES, SyntheticScenes, render_scene


@pytest.fixture(scope="module")
def fifty():
    return [render_scene(i, seed=0) for i in range(50)]


def test_shapes_and_determinism():
    img, mask = render_scene(7, height=96, width=128, seed=1)
    assert img.shape == (96, 128, 3) and img.dtype == np.uint8
    assert mask.shape == (96, 128) and mask.dtype == np.uint8
    img2, mask2 = render_scene(7, height=96, width=128, seed=1)
    assert np.array_equal(img, img2) and np.array_equal(mask, mask2)
    other_seed = render_scene(7, seed=2)
    assert not np.array_equal(mask, other_seed[1]) and not np.array_equal(img, other_seed[0])
    assert not np.array_equal(mask, render_scene(8, seed=1)[1])
    big = render_scene(3, height=180, width=240)
    assert big[0].shape == (180, 240, 3) and big[1].shape == (180, 240)


def test_dataset_wrapper():
    scenes = SyntheticScenes(10, height=48, width=64, seed=5)
    assert len(scenes) == 10 and scenes.num_classes == len(SYNTHETIC_CLASSES) == 8
    assert scenes.ignore_index == 255 and scenes.frame_id(42) == "syn_0000042"
    ref = render_scene(3, height=48, width=64, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(scenes[3], ref, strict=True))
    assert np.array_equal(scenes[-1][1], scenes[9][1])
    with pytest.raises(IndexError):
        scenes[10]
    with pytest.raises(ValueError):
        render_scene(-1)


def test_every_class_appears_and_no_void(fifty):
    counts = sum(np.bincount(m.ravel(), minlength=256) for _, m in fifty)
    assert counts[len(SYNTHETIC_CLASSES) :].sum() == 0  # only valid ids, no 255
    assert (counts[: len(SYNTHETIC_CLASSES)] > 0).all(), dict(zip(SYNTHETIC_CLASSES, counts[:8].tolist(), strict=True))


def test_class_imbalance_like_camvid(fifty):
    counts = sum(np.bincount(m.ravel(), minlength=8) for _, m in fifty).astype(float)
    share = counts / counts.sum()
    present = share[share > 0]
    assert present.max() > 10 * present.min()
    big = {SYNTHETIC_CLASSES[i] for i in np.argsort(share)[-3:]}
    assert big == {"sky", "building", "road"}
    for rare in ("pedestrian", "pole"):
        assert share[SYNTHETIC_CLASSES.index(rare)] < 0.02


def test_colour_alone_does_not_separate_classes(fifty):
    x = np.concatenate([im.reshape(-1, 3) for im, _ in fifty]).astype(np.float32)
    y = np.concatenate([m.ravel() for _, m in fifty])
    means = np.stack([x[y == c].mean(0) for c in range(8)])
    pred = ((x[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (pred == y).mean() < 0.7  # a nearest-colour classifier must not solve the task
    # ...but classes are not pure noise either: their mean colours differ
    assert np.ptp(means, axis=0).max() > 40


def test_write_folder_layout(tmp_path):
    root = SyntheticScenes(3, height=24, width=32).write_folder(str(tmp_path / "out"), split="train")
    assert root == str(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out" / "train").iterdir()) == [
        "syn_0000000.png",
        "syn_0000001.png",
        "syn_0000002.png",
    ]
    assert len(list((tmp_path / "out" / "trainannot").iterdir())) == 3
