import numpy as np
import pytest

from rayal.data import (
    compute_regions,
    dominant_class,
    grid_regions,
    load_image,
    num_regions,
    region_boxes,
    region_pixel_counts,
    relabel_consecutive,
    render_scene,
    seeds_regions,
    slic_regions,
)


def _has_ximgproc() -> bool:
    try:
        import cv2.ximgproc  # noqa: F401
    except ImportError:
        return False
    return True


def assert_valid_region_map(r, shape):
    assert r.dtype == np.int32 and r.shape == shape
    n = num_regions(r)
    assert np.array_equal(np.unique(r), np.arange(n))  # consecutive, every pixel has one id


def assert_raster_order(r):
    _, first = np.unique(r.ravel(), return_index=True)
    assert (np.diff(first) > 0).all()  # region k first appears before region k+1


def test_grid_4x4_camvid_size():
    r = grid_regions(360, 480, 4, 4)
    assert_valid_region_map(r, (360, 480))
    assert num_regions(r) == 16
    assert (region_pixel_counts(r) == 90 * 120).all()
    for i in range(4):
        for j in range(4):
            assert (r[i * 90 : (i + 1) * 90, j * 120 : (j + 1) * 120] == i * 4 + j).all()
    boxes = region_boxes(r)
    assert boxes[6].tolist() == [90, 240, 180, 360]


def test_grid_uneven_and_errors():
    r = grid_regions(10, 7, 3, 2)
    assert_valid_region_map(r, (10, 7))
    heights = np.bincount(r[:, 0] // 2)  # cell heights down column 0
    widths = np.bincount(r[0, :])  # cell widths along row 0
    assert heights.sum() == 10 and set(heights.tolist()) <= {3, 4}
    assert widths.sum() == 7 and set(widths.tolist()) <= {3, 4}
    assert (region_pixel_counts(r) == np.outer(heights, widths).ravel()).all()
    with pytest.raises(ValueError, match="rows"):
        grid_regions(3, 10, 4, 2)
    with pytest.raises(ValueError, match="cols"):
        grid_regions(10, 10, 2, 0)


def test_relabel_consecutive_raster_order():
    lab = np.array([[5, 5, 2], [9, 2, 2], [9, 7, 5]])
    assert relabel_consecutive(lab).tolist() == [[0, 0, 1], [2, 1, 1], [2, 3, 0]]


def test_slic_deterministic_and_consecutive():
    img, _ = render_scene(1, height=96, width=128)
    a = slic_regions(img, n_segments=60)
    b = slic_regions(img.copy(), n_segments=60)
    assert np.array_equal(a, b)
    assert_valid_region_map(a, (96, 128))
    assert_raster_order(a)
    assert 20 <= num_regions(a) <= 120
    with pytest.raises(ValueError, match="uint8"):
        slic_regions(img.astype(np.float32))


def test_slic_on_camvid(camvid_root):
    path = sorted((camvid_root / "val").glob("*.png"))[0]
    r = compute_regions(load_image(str(path), size=(180, 240)), "superpixel", method="slic", n_segments=150)
    assert_valid_region_map(r, (180, 240))
    assert_raster_order(r)


def test_region_boxes_hand_checked():
    r = np.array(
        [
            [0, 0, 1, 1],
            [0, 2, 2, 1],
            [3, 2, 2, 1],
        ]
    )
    assert region_boxes(r).tolist() == [
        [0, 0, 2, 2],  # y0, x0, y1, x1 (exclusive)
        [0, 2, 3, 4],
        [1, 1, 3, 3],
        [2, 0, 3, 1],
    ]
    assert region_boxes(np.array([[0, 2]])).tolist() == [[0, 0, 1, 1], [0, 0, 0, 0], [0, 1, 1, 2]]


def test_compute_regions_dispatch():
    img = np.zeros((40, 60, 3), np.uint8)
    assert np.array_equal(compute_regions(img, "patch", rows=2, cols=3), grid_regions(40, 60, 2, 3))
    assert np.array_equal(compute_regions(img, "grid"), grid_regions(40, 60, 4, 4))
    assert (compute_regions(img, "image") == 0).all()
    with pytest.raises(ValueError, match="unknown annotation unit 'pixel'"):
        compute_regions(img, "pixel")
    with pytest.raises(ValueError, match="method 'felzenszwalb'"):
        compute_regions(img, "superpixel", method="felzenszwalb")


def test_dominant_class_ignores_void():
    r = np.array([[0, 0, 1], [0, 2, 1]])
    m = np.array([[3, 3, 255], [1, 255, 255]])
    assert dominant_class(r, m, num_classes=4, ignore_index=255).tolist() == [3, 255, 255]


@pytest.mark.skipif(not _has_ximgproc(), reason="cv2.ximgproc (opencv-contrib) not installed")
def test_seeds_consecutive():
    img, _ = render_scene(2, height=96, width=128)
    r = seeds_regions(img, n_segments=50)
    assert_valid_region_map(r, (96, 128))
    assert_raster_order(r)
    assert np.array_equal(r, compute_regions(img, "superpixel", method="seeds", n_segments=50))


@pytest.mark.skipif(_has_ximgproc(), reason="only checks the message when opencv-contrib is missing")
def test_seeds_missing_dependency_message():
    with pytest.raises(ImportError, match=r"pip install rayal\[seeds\]"):
        seeds_regions(np.zeros((8, 8, 3), np.uint8))
