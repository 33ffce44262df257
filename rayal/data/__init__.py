"""Data layer: URIs, decoding, folder datasets, pool manifests, synthetic scenes, regions.

Pure numpy / pyarrow / PIL / scikit-image (no Ray): usable in actors, jobs
and notebooks alike.
"""
from types import ModuleType as _ModuleType

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
    remove,
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

# the public names are exactly those imported above (each module keeps its own __all__)
__all__ = sorted(name for name, value in globals().items()
                 if not name.startswith("_") and not isinstance(value, _ModuleType))
