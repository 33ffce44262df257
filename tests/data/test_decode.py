import io
import pickle

import numpy as np
import pytest
from PIL import Image

from rayal.data import FrameError, LabelError, decode_image, decode_mask, load_image, load_mask, resize_mask

from .conftest import png_bytes, write_png


def test_real_camvid_frame_and_mask(camvid_root):
    img_path = sorted((camvid_root / "train").glob("*.png"))[0]
    img = load_image(str(img_path), frame_id=img_path.stem)
    assert img.shape == (360, 480, 3) and img.dtype == np.uint8
    mask = load_mask(
        str(camvid_root / "trainannot" / img_path.name), num_classes=11, ignore_index=11, expected_size=img.shape[:2]
    )
    assert mask.shape == (360, 480) and mask.dtype == np.uint8 and mask.max() <= 11
    small = load_image(str(img_path), size=(90, 120))
    assert small.shape == (90, 120, 3)


def test_grey_and_rgba_become_rgb():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = decode_image(png_bytes(grey))
    assert out.shape == (3, 4, 3) and (out == grey[..., None]).all()
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    out = decode_image(png_bytes(rgba))
    assert out.shape == (2, 2, 3) and (out[..., 0] == 200).all()


def test_corrupt_png_names_frame():
    data = png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    for bad in (data[: len(data) // 2], b"not an image at all", b""):
        with pytest.raises(FrameError) as ei:
            decode_image(bad, frame_id="0001TP_006690", uri="/data/x.png")
        e = ei.value
        assert e.frame_id == "0001TP_006690" and e.reason.startswith("cannot decode image")
        assert str(e).startswith("frame 0001TP_006690 (/data/x.png): cannot decode image")


def test_missing_file(tmp_path):
    with pytest.raises(FrameError) as ei:
        load_image(str(tmp_path / "nope.png"), frame_id="f1")
    assert ei.value.reason == "missing file" and not isinstance(ei.value, LabelError)
    with pytest.raises(LabelError, match="missing file"):
        load_mask(str(tmp_path / "nope.png"), num_classes=3, ignore_index=255, frame_id="f1")


def test_rgb_mask_rejected():
    with pytest.raises(LabelError, match="mask must be single-channel class ids") as ei:
        decode_mask(png_bytes(np.zeros((4, 4, 3), np.uint8)), num_classes=3, ignore_index=255, frame_id="f2")
    assert ei.value.frame_id == "f2" and "f2" in str(ei.value)


def test_wrong_size_mask_names_sizes():
    with pytest.raises(LabelError) as ei:
        decode_mask(
            png_bytes(np.zeros((10, 20), np.uint8)),
            num_classes=3,
            ignore_index=255,
            expected_size=(12, 20),
            frame_id="f3",
            uri="/m/f3.png",
        )
    msg = str(ei.value)
    assert "10x20" in msg and "12x20" in msg and "f3" in msg and "/m/f3.png" in msg


def test_unknown_class_ids_listed():
    m = np.zeros((5, 5), np.uint8)
    m[0, 0], m[1, 1] = 42, 11  # 11 is the ignore index: allowed
    with pytest.raises(LabelError) as ei:
        decode_mask(png_bytes(m), num_classes=11, ignore_index=11, frame_id="f4")
    assert "[42]" in str(ei.value) and "f4" in str(ei.value)
    m[0, 0] = 10
    out = decode_mask(png_bytes(m), num_classes=11, ignore_index=11)
    assert out.dtype == np.uint8 and out[0, 0] == 10 and out[1, 1] == 11


def test_unknown_ids_capped_at_ten():
    m = np.arange(20, 41, dtype=np.uint8).reshape(3, 7)
    with pytest.raises(LabelError) as ei:
        decode_mask(png_bytes(m), num_classes=5, ignore_index=255)
    msg = str(ei.value)
    assert "20, 21" in msg and "29]" in msg and "and 11 more" in msg and "30" not in msg.split("]")[0]


def test_palette_and_16bit_masks():
    pal = np.array([[0, 1], [2, 1]], np.uint8)
    img = Image.fromarray(pal, mode="L").convert("P")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    assert decode_mask(buf.getvalue(), num_classes=3, ignore_index=255).tolist() == [[0, 1], [2, 1]]
    wide = np.array([[0, 300], [399, 399]], np.uint16)  # 16-bit PNG, ids beyond 255
    out = decode_mask(png_bytes(wide), num_classes=400, ignore_index=-1)
    assert out.dtype == np.int16 and out.tolist() == [[0, 300], [399, 399]]
    wide[1, 1] = 65535
    with pytest.raises(LabelError, match=r"\[65535\]"):
        decode_mask(png_bytes(wide), num_classes=400, ignore_index=-1)


def test_mask_resize_nearest_keeps_ids():
    m = np.array([[0, 1], [2, 3]], np.uint8)
    out = decode_mask(png_bytes(m), num_classes=4, ignore_index=255, size=(4, 6))
    assert out.shape == (4, 6) and set(np.unique(out)) == {0, 1, 2, 3}
    assert (out[:2, :3] == 0).all() and (out[2:, 3:] == 3).all()
    assert resize_mask(np.arange(9).reshape(3, 3), (3, 3)).tolist() == np.arange(9).reshape(3, 3).tolist()


def test_errors_pickle_and_attributes(tmp_path):
    e = LabelError("unknown class ids [42]", frame_id="f", uri="/x.png")
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is LabelError and (e2.frame_id, e2.uri, e2.reason) == ("f", "/x.png", "unknown class ids [42]")
    assert str(e2) == str(e) and isinstance(e2, FrameError)
    assert str(FrameError("bad")) == "frame <bytes>: bad"


def test_load_image_from_disk_roundtrip(tmp_path):
    arr = np.random.default_rng(1).integers(0, 255, (7, 9, 3), dtype=np.uint8)
    p = write_png(tmp_path / "a.png", arr)
    assert (load_image(str(p)) == arr).all()
    assert (load_image("file://" + str(p)) == arr).all()


# --- EXIF orientation, lossy masks, low bit depth ------------------------------------------------
def _sideways_jpeg(upright: np.ndarray, orientation: int = 6) -> bytes:
    """``upright`` stored as a phone stores it: pixels rotated, EXIF Orientation says how to show."""
    stored = Image.fromarray(upright).transpose(
        {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied_as_labelling_tools_do(orientation):
    from PIL import ImageOps

    from rayal.data.decode import image_size_of

    upright = np.zeros((32, 48, 3), np.uint8)
    upright[:16] = 255                                  # bright top half (sky)
    data = _sideways_jpeg(upright, orientation)
    viewer = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    got = decode_image(data, frame_id="p")
    assert got.shape == (32, 48, 3) and np.abs(got.astype(int) - viewer).mean() < 1
    assert got[:16].mean() > 240 and got[16:].mean() < 15
    assert image_size_of(data) == (32, 48)              # header only, same orientation
    assert decode_image(data, size=(16, 24)).shape == (16, 24, 3)


def test_a_mask_drawn_on_the_upright_view_fits_an_exif_rotated_frame(tmp_path):
    from rayal.data.decode import read_image_size

    (tmp_path / "f.jpg").write_bytes(_sideways_jpeg(np.zeros((20, 30, 3), np.uint8)))
    size = read_image_size(str(tmp_path / "f.jpg"))
    assert size == (20, 30) == load_image(str(tmp_path / "f.jpg")).shape[:2]
    mask = decode_mask(png_bytes(np.zeros((20, 30), np.uint8)), num_classes=2, ignore_index=255,
                       expected_size=size)
    assert mask.shape == (20, 30)


def test_lossy_mask_content_is_refused_whatever_the_file_is_called():
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 2
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="JPEG", quality=90)
    with pytest.raises(LabelError, match=r"mask of frame m \(m\.png\): JPEG mask: lossy"):
        decode_mask(buf.getvalue(), num_classes=3, ignore_index=255, frame_id="m", uri="m.png")
    lossy = io.BytesIO()
    Image.fromarray(mask).save(lossy, format="WEBP", quality=80)
    with pytest.raises(LabelError, match="lossy WebP mask"):
        decode_mask(lossy.getvalue(), num_classes=3, ignore_index=255)


def test_16_bit_frames_using_few_bits_are_named_in_a_warning():
    from rayal.data.decode import DataWarning, _warned

    _warned.clear()
    twelve = (np.arange(64 * 64).reshape(64, 64) % 4096).astype(np.uint16)   # 12-bit data
    with pytest.warns(DataWarning, match=r"frame cam7: 16-bit image whose largest value is 4095 "
                                         r"\(12-bit data\).* 17 grey level"):
        decode_image(png_bytes(twelve), frame_id="cam7")
    full = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decode_image(png_bytes(full), frame_id="ok")


def test_a_mask_of_the_sideways_frame_is_named_as_turned():
    with pytest.raises(LabelError, match=r"does not match image size 20x30 \(the frame turned by 90"):
        decode_mask(png_bytes(np.zeros((30, 20), np.uint8)), num_classes=2, ignore_index=255,
                    expected_size=(20, 30))
    with pytest.raises(LabelError, match=r"does not match image size 20x30$"):
        decode_mask(png_bytes(np.zeros((21, 30), np.uint8)), num_classes=2, ignore_index=255,
                    expected_size=(20, 30))
