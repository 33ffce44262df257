"""Data layer: URIs, decoding, folder datasets, pool manifests, synthetic scenes, regions.

Pure numpy / pyarrow / PIL / scikit-image (no Ray): usable in actors, jobs
and notebooks alike.
"""

from rayal.data.decode import (DataWarning, decode_image, decode_mask, image_size_of, load_image, load_mask,
                               mask_dtype, read_image_size, resize_image, resize_mask)
from rayal.data.maskfiles import index_mask_files, mask_file_status
from rayal.data.errors import FrameError, LabelError
from rayal.data.folder import FolderDataset, FrameRecord, read_split_file
from rayal.data.io import (
    exists,
    has_scheme,
    join_uri,
    list_files,
    makedirs,
    read_bytes,
    resolve_filesystem,
    write_bytes,
)
from rayal.data.manifest import (
    MANIFEST_SCHEMA,
    iter_manifest,
    manifest_base_dir,
    manifest_num_rows,
    read_manifest,
    resolve_relative_uris,
    validate_manifest_schema,
    write_manifest,
)
from rayal.data.regions import (
    compute_regions,
    dominant_class,
    grid_regions,
    num_regions,
    region_boxes,
    region_class_counts,
    region_pixel_counts,
    relabel_consecutive,
    seeds_regions,
    slic_regions,
    unit_region_map,
)
from rayal.data.synthetic import (SYNTHETIC_CLASSES, SYNTHETIC_SCHEME, SyntheticScenes,
                                  is_synthetic_uri, load_synthetic, render_scene, synthetic_uri)

__all__ = [
    "FrameError",
    "LabelError",
    "resolve_filesystem",
    "read_bytes",
    "write_bytes",
    "join_uri",
    "makedirs",
    "list_files",
    "exists",
    "has_scheme",
    "DataWarning",
    "decode_image",
    "image_size_of",
    "read_image_size",
    "index_mask_files",
    "mask_file_status",
    "load_image",
    "decode_mask",
    "load_mask",
    "resize_image",
    "resize_mask",
    "mask_dtype",
    "FrameRecord",
    "FolderDataset",
    "read_split_file",
    "MANIFEST_SCHEMA",
    "write_manifest",
    "manifest_num_rows",
    "iter_manifest",
    "manifest_base_dir",
    "read_manifest",
    "resolve_relative_uris",
    "validate_manifest_schema",
    "SYNTHETIC_CLASSES",
    "SyntheticScenes",
    "render_scene",
    "SYNTHETIC_SCHEME",
    "synthetic_uri",
    "is_synthetic_uri",
    "load_synthetic",
    "unit_region_map",
    "grid_regions",
    "slic_regions",
    "seeds_regions",
    "compute_regions",
    "num_regions",
    "relabel_consecutive",
    "region_boxes",
    "region_pixel_counts",
    "region_class_counts",
    "dominant_class",
]
