"""Pool size in units: what budgets and labelled fractions are measured against."""
import pyarrow as pa
import pyarrow.parquet as pq

from rayal.config.sections import RayalConfig
from rayal.pipeline.loop.annotate import pool_units_total

BASE = {"data": {"num_classes": 4, "synthetic": {"num_frames": 3}}}


def _config(unit, **scoring):
    raw = dict(BASE, pool={"unit": unit},
               scoring=dict({"units": [unit] if unit != "image" else [], "grid": [2, 3]}, **scoring))
    return RayalConfig.model_validate(raw)


def _round0_scores(tmp_path, per_frame: dict[str, int]):
    """A score directory whose regions table holds ``n`` superpixels (and 6 patches) per frame."""
    rows = {"frame_id": [], "unit": [], "region_id": []}
    for frame, n in per_frame.items():
        for unit, count in (("superpixel", n), ("patch", 6)):
            rows["frame_id"] += [frame] * count
            rows["unit"] += [unit] * count
            rows["region_id"] += list(range(count))
    (tmp_path / "regions").mkdir()
    pq.write_table(pa.table(rows), tmp_path / "regions" / "part-0.parquet")
    return str(tmp_path)


def test_image_and_patch_units_are_counted_from_the_frames():
    assert pool_units_total(_config("image"), 7) == 7
    assert pool_units_total(_config("patch"), 7) == 7 * 6


def test_superpixels_are_the_regions_really_produced(tmp_path):
    scores = _round0_scores(tmp_path, {"a": 29, "b": 31, "c": 27})
    config = _config("superpixel", superpixel={"n_segments": 40}, top_k_regions=None)
    assert pool_units_total(config, 3, scores) == 29 + 31 + 27
    assert pool_units_total(config, 3) == 3 * 40       # no round-0 tables: nominal


def test_top_k_tables_do_not_hold_every_region_so_the_count_is_nominal(tmp_path):
    scores = _round0_scores(tmp_path, {"a": 5, "b": 5, "c": 5})
    config = _config("superpixel", superpixel={"n_segments": 40}, top_k_regions=5)
    assert pool_units_total(config, 3, scores) == 120
