"""Mixed frame sizes (padding, exact evaluation) and label-space checks before training."""
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from rayal.config import config_from_dict
from rayal.data.decode import DataWarning
from rayal.data.errors import LabelError
from rayal.data.splits import LabelledSplit, labelled_split
from rayal.models import load_checkpoint
from rayal.train.checks import DegenerateSplitError, check_labels, label_stats
from rayal.train.dataset import LabelSpec, TrainingSet, eval_batches, pad_batch
from rayal.train.loop import BEST, STATE, train_loop
from rayal.train.trainer import DATA_REFUSED, fit

IGN = 255
SIZES = [(48, 64), (40, 56), (52, 44), (48, 64)]


def _scene(h, w, seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 2:] = 1
    mask[h // 4:h // 2, : w // 3] = 2
    colours = np.array([[40, 40, 40], [120, 200, 90], [200, 60, 60]], np.int16)
    img = np.clip(colours[mask] + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    return img, mask


def _folder(root, sizes=SIZES, val_sizes=((44, 60), (48, 64)), mask_fn=None):
    for split, sz, off in (("train", sizes, 0), ("val", val_sizes, 50)):
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for i, (h, w) in enumerate(sz):
            img, mask = _scene(h, w, off + i)
            if mask_fn is not None:
                mask = mask_fn(split, mask)
            Image.fromarray(img).save(root / split / f"f{i}.png")
            Image.fromarray(mask, mode="L").save(root / f"{split}annot" / f"f{i}.png")


def _config(tmp_path, num_classes=3, class_names=None, **train):
    data = {"source": "folder", "root": str(tmp_path / "data"), "images": "{split}",
            "masks": "{split}annot", "pool_split": "train", "eval_split": "val",
            "num_classes": num_classes, "ignore_index": IGN}
    if class_names:
        data["class_names"] = class_names
    return config_from_dict({
        "name": "checks", "seed": 0, "device": "cpu", "output_dir": str(tmp_path / "out"),
        "data": data,
        "model": {"arch": "Unet", "encoder": "resnet18", "encoder_depth": 3,
                  "decoder_channels": [16, 8, 8]},
        "train": {"epochs": 1, "batch_size": 4, "lr": 3e-3, "patience": None, **train},
    })


def _training_set(config):
    split = labelled_split(config.data, "train")
    return TrainingSet(split, [LabelSpec(f) for f in split.frame_ids],
                       augment_config=config.train.augment)


# --- kind 4: frames of different sizes ---------------------------------------------------------
def test_pad_batch_pads_images_with_zero_and_masks_with_ignore_index():
    a = (torch.ones(3, 2, 3), torch.zeros(2, 3, dtype=torch.int64))
    b = (torch.ones(3, 4, 2), torch.ones(4, 2, dtype=torch.int64))
    images, masks = pad_batch([a, b], IGN)
    assert images.shape == (2, 3, 4, 3) and masks.shape == (2, 4, 3)
    assert torch.all(images[0, :, 2:] == 0) and torch.all(images[1, :, :, 2:] == 0)
    assert torch.all(masks[0, 2:] == IGN) and torch.all(masks[1, :, 2:] == IGN)
    assert torch.all(masks[0, :2, :3] == 0) and torch.all(masks[1, :, :2] == 1)
    # real pixels are untouched, so they are the only ones counted by the loss
    assert int((masks != IGN).sum()) == 2 * 3 + 4 * 2


def test_eval_batches_never_mix_sizes_and_keep_every_real_pixel(tmp_path):
    _folder(tmp_path / "data")
    split = labelled_split(_config(tmp_path).data, "train")
    batches = list(eval_batches(split, 4)())
    # sizes 48x64, 40x56, 52x44, 48x64 in that order: no two neighbours share a size
    assert [tuple(b[0].shape[2:]) for b in batches] == SIZES
    assert sum(int(m.numel()) for _, m in batches) == sum(h * w for h, w in SIZES)


def test_training_on_mixed_sizes_runs_with_and_without_a_crop(tmp_path):
    _folder(tmp_path / "data")
    for crop in (None, [40, 48]):
        config = _config(tmp_path, augment={"crop": crop, "flip": True, "brightness": 0.0})
        ck = tmp_path / f"ck_{crop is None}"
        state = train_loop(config, _training_set(config), labelled_split(config.data, "val"), ck,
                           torch.device("cpu"))
        assert state["finished"] and np.isfinite(state["history"][0]["val_miou"])
        assert (ck / BEST).exists()


# --- kinds 6 and 7: label-space checks --------------------------------------------------------
def test_binary_0_255_masks_warn_naming_the_absent_class_and_ignore_index(tmp_path):
    _folder(tmp_path / "data", mask_fn=lambda split, m: np.where(m > 0, 255, 0).astype(np.uint8))
    config = _config(tmp_path, num_classes=2, class_names=["background", "lesion"])
    with pytest.warns(DataWarning) as caught:
        check_labels(label_stats("split 'train'", _training_set(config).label_items(), 2, IGN),
                     config.data.class_names)
    text = str(caught[0].message)
    assert "lesion (1) never occur" in text and "ignore_index 255" in text and "0/255" in text


def test_frames_with_background_only_are_named_with_their_values():
    masks = [("a", np.array([[0, 1], [2, 0]], np.uint8), True),
             ("empty", np.array([[0, 0], [255, 0]], np.uint8), True),
             ("sparse", np.array([[0, 255], [255, 255]], np.uint8), False)]
    stats = label_stats("split 'x'", masks, 3, IGN)
    assert stats.background_only == [("empty", [0, 255])]
    assert stats.counts.tolist() == [6, 1, 1] and stats.ignored == 4
    with pytest.warns(DataWarning, match=r"frame empty has no pixel of any class but .*0, 255"):
        check_labels(stats)


def test_a_split_without_labelled_pixels_is_refused_by_name():
    stats = label_stats("validation split 'val'", [("a", np.full((2, 2), IGN, np.uint8), True)],
                        3, IGN)
    with pytest.raises(DegenerateSplitError, match=r"validation split 'val'.*no.* labelled pixel"):
        check_labels(stats)


def test_healthy_labels_give_no_warning():
    stats = label_stats("s", [("a", np.array([[0, 1], [2, 255]], np.uint8), True)], 3, IGN)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_labels(stats)


def test_fit_refuses_an_unlabelled_validation_split_before_training(ray_local, tmp_path):
    _folder(tmp_path / "data", mask_fn=lambda split, m: m if split == "train"
            else np.full_like(m, IGN))
    config = _config(tmp_path)
    specs = [LabelSpec(f) for f in labelled_split(config.data, "train").frame_ids]
    with pytest.raises(DegenerateSplitError, match="validation split 'val'"):
        fit(config, specs, tmp_path / "ck", run_name="degenerate")
    assert not (tmp_path / "ck" / STATE).exists()      # refused before any epoch


def test_refused_data_is_raised_once_and_a_mended_set_then_trains(ray_local, tmp_path):
    """The worker's refusal reaches the driver as the LabelError naming the frame (not a restart
    of the worker group, which would only refuse it again); once the mask is mended, the same
    checkpoint folder trains: no refusal is left behind."""
    _folder(tmp_path / "data")
    bad = tmp_path / "data" / "trainannot" / "f1.png"
    good = bad.read_bytes()
    Image.fromarray(np.zeros((20, 20), np.uint8), mode="L").save(bad)
    config = _config(tmp_path)
    specs = [LabelSpec(f) for f in labelled_split(config.data, "train").frame_ids]
    with pytest.raises(LabelError, match="f1.*does not match image size"):
        fit(config, specs, tmp_path / "ck", run_name="refused")
    assert not (tmp_path / "ck" / DATA_REFUSED).exists() and not (tmp_path / "ck" / STATE).exists()
    bad.write_bytes(good)
    state = fit(config, specs, tmp_path / "ck", run_name="mended")
    assert state["finished"] and state["best_checkpoint"]


def test_nan_validation_miou_keeps_the_last_weights_as_best(tmp_path):
    _folder(tmp_path / "data")
    config = _config(tmp_path, epochs=2)
    empty_val = LabelledSplit("val", [], 3, IGN, lambda i: None)
    with pytest.warns(DataWarning, match="validation mIoU is NaN"):
        state = train_loop(config, _training_set(config), empty_val, tmp_path / "ck",
                           torch.device("cpu"))
    assert state["best_epoch"] == 1 and state["best_is_last"]
    model, meta = load_checkpoint(str(tmp_path / "ck" / BEST))
    assert meta["epoch"] == 1
    assert json.loads((tmp_path / "ck" / STATE).read_text())["best_epoch"] == 1


def test_a_labelled_set_without_labelled_pixels_is_refused_before_any_epoch(tmp_path):
    _folder(tmp_path / "data", mask_fn=lambda split, m: m if split == "val"
            else np.full_like(m, IGN))
    config = _config(tmp_path)
    with pytest.raises(DegenerateSplitError, match=r"the labelled set \(4 frame\(s\) of split "
                                                   r"'train'\).*255 \(ignore_index\)"):
        train_loop(config, _training_set(config), labelled_split(config.data, "val"),
                   tmp_path / "ck", torch.device("cpu"))
    assert not (tmp_path / "ck" / STATE).exists()
