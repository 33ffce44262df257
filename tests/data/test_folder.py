from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from rayal.data import FolderDataset, FrameRecord, LabelError, SyntheticScenes, render_scene

from .conftest import write_png


def _make(root: Path, stems, *, mask_stems=None, split="train", ext=".png", size=(6, 8)):
    """Tiny CamVid-layout dataset: images in root/split, masks (ids 0..2) in root/splitannot."""
    rng = np.random.default_rng(0)
    for s in stems:
        write_png(root / split / f"{s}{ext}", rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    for s in stems if mask_stems is None else mask_stems:
        write_png(root / f"{split}annot" / f"{s}.png", rng.integers(0, 3, size, dtype=np.uint8))
    return root


def test_camvid_counts_and_pairing(camvid_root):
    train = FolderDataset(str(camvid_root), split="train", num_classes=11, ignore_index=11)
    val = FolderDataset(str(camvid_root), split="val", num_classes=11, ignore_index=11)
    assert len(train) == 367 and len(val) == 101
    recs = train.records()
    assert [r.frame_id for r in recs] == sorted(r.frame_id for r in recs)
    for r in recs:
        assert Path(r.image_uri).parent.name == "train" and Path(r.mask_uri).parent.name == "trainannot"
        assert Path(r.image_uri).name == Path(r.mask_uri).name == r.frame_id + ".png"
    img, mask = val[0]
    assert img.shape == (360, 480, 3) and mask.shape == (360, 480) and mask.max() <= 11
    small = FolderDataset(str(camvid_root), split="val", num_classes=11, ignore_index=11, image_size=(180, 240))
    img, mask = small[-1]
    assert img.shape == (180, 240, 3) and mask.shape == (180, 240)
    table = train.to_manifest()
    assert table.column_names == ["frame_id", "uri", "mask_uri"] and table.num_rows == 367
    assert table.schema.field("mask_uri").type == pa.string()


def test_extensions_sorting_and_getitem(tmp_path):
    root = _make(tmp_path, ["c", "a"])
    write_png(tmp_path / "train" / "b.PNG", np.zeros((6, 8, 3), np.uint8))
    write_png(tmp_path / "trainannot" / "b.png", np.ones((6, 8), np.uint8))
    (tmp_path / "train" / "notes.txt").write_text("ignored")
    ds = FolderDataset(root, num_classes=3, ignore_index=255)
    assert ds.frame_ids == ["a", "b", "c"] and len(ds) == 3
    img, mask = ds[1]
    assert img.shape == (6, 8, 3) and (mask == 1).all() and mask.dtype == np.uint8
    with pytest.raises(IndexError):
        ds[3]


def test_split_file_restricts_and_orders(tmp_path):
    root = _make(tmp_path, ["a", "b", "c", "d"])
    (tmp_path / "subset.txt").write_text("# chosen frames\nc\n\na.png  # by file name\n")
    ds = FolderDataset(root, split_file="subset.txt", num_classes=3, ignore_index=255)  # relative to root
    assert ds.frame_ids == ["c", "a"]
    (tmp_path / "bad.txt").write_text("a\nzzz_missing\n")
    with pytest.raises(ValueError, match="zzz_missing"):
        FolderDataset(root, split_file=str(tmp_path / "bad.txt"), num_classes=3, ignore_index=255)
    (tmp_path / "dup.txt").write_text("a\na\n")
    with pytest.raises(ValueError, match="listed twice"):
        FolderDataset(root, split_file=str(tmp_path / "dup.txt"), num_classes=3, ignore_index=255)


def test_image_without_mask_is_an_error(tmp_path):
    root = _make(tmp_path, ["a", "b"], mask_stems=["a"])
    with pytest.raises(ValueError, match=r"b\.png.*has no mask"):
        FolderDataset(root, num_classes=3, ignore_index=255)
    pool = FolderDataset(root, masks=None, num_classes=3, ignore_index=255)  # unlabelled pool is fine
    assert not pool.labelled and pool[1][1] is None
    assert pool.to_manifest().column("mask_uri").null_count == 2


def test_missing_dir_and_duplicate_stems(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "val")):
        FolderDataset(tmp_path, split="val", num_classes=3, ignore_index=255)
    root = _make(tmp_path, ["x"])
    write_png(tmp_path / "train" / "x.jpg", np.zeros((6, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="duplicate image stem 'x'"):
        FolderDataset(root, num_classes=3, ignore_index=255)


def test_bad_mask_raises_label_error_naming_frame(tmp_path):
    root = _make(tmp_path, ["good", "wrong"])
    write_png(tmp_path / "trainannot" / "wrong.png", np.zeros((5, 8), np.uint8))
    ds = FolderDataset(root, num_classes=3, ignore_index=255)
    ds[0]
    with pytest.raises(LabelError) as ei:
        ds[1]
    assert ei.value.frame_id == "wrong" and "5x8" in str(ei.value) and "6x8" in str(ei.value)
    with pytest.raises(ValueError, match="class_names"):
        FolderDataset(root, num_classes=3, ignore_index=255, class_names=["a", "b"])


def test_reads_synthetic_folder(tmp_path):
    scenes = SyntheticScenes(5, height=32, width=48, seed=3)
    root = scenes.write_folder(str(tmp_path / "syn"), split="val")
    ds = FolderDataset(root, split="val", num_classes=scenes.num_classes, ignore_index=scenes.ignore_index)
    assert ds.frame_ids == [scenes.frame_id(i) for i in range(5)]
    img, mask = ds[4]
    ref_img, ref_mask = render_scene(4, height=32, width=48, seed=3)
    assert (img == ref_img).all() and (mask == ref_mask).all()
    assert ds.records()[0] == FrameRecord("syn_0000000", ds.records()[0].image_uri, ds.records()[0].mask_uri)


def test_mask_files_follow_the_one_rule(tmp_path):
    from PIL import Image

    write_png(tmp_path / "train" / "a.png", np.zeros((6, 8, 3), np.uint8))
    write_png(tmp_path / "train" / "b.png", np.zeros((6, 8, 3), np.uint8))
    (tmp_path / "trainannot").mkdir()
    Image.fromarray(np.ones((6, 8), np.uint8)).save(tmp_path / "trainannot" / "a.PNG")
    Image.fromarray(np.ones((6, 8), np.uint8)).save(tmp_path / "trainannot" / "b.jpg")
    with pytest.raises(ValueError, match=r"frame b\) has no mask .*a JPEG mask exists: b\.jpg; lossy"):
        FolderDataset(tmp_path, num_classes=2, ignore_index=255)
    (tmp_path / "trainannot" / "b.jpg").rename(tmp_path / "trainannot" / "b.Png")
    ds = FolderDataset(tmp_path, num_classes=2, ignore_index=255)
    assert [r.mask_uri.rsplit("/", 1)[-1] for r in ds.records()] == ["a.PNG", "b.Png"]


def test_exif_rotated_frames_pair_with_masks_drawn_upright(tmp_path):
    from PIL import Image

    upright = np.zeros((6, 8, 3), np.uint8)
    upright[:3] = 250
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "train").mkdir()
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(
        tmp_path / "train" / "p.jpg", quality=95, exif=exif.tobytes())
    write_png(tmp_path / "trainannot" / "p.png", np.eye(6, 8, dtype=np.uint8))
    image, mask = FolderDataset(tmp_path, num_classes=2, ignore_index=255)[0]
    assert image.shape == (6, 8, 3) and mask.shape == (6, 8)
    assert image[:3].mean() > 200 and image[3:].mean() < 50
