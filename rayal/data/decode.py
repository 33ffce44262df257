"""Decoding frames and label masks from bytes, with validation and resizing.

This is the one decode path of rayal: scoring, training, evaluation, query export and the
simulated annotator all read frames through :func:`decode_image` / :func:`load_image` (pixels)
or :func:`read_image_size` (header only), so they all see the same pixels.

Images come back as ``uint8 (H, W, 3)`` RGB, **upright**: an EXIF orientation tag (phone and
drone JPEGs) is applied the way labelling tools and browsers apply it
(:func:`PIL.ImageOps.exif_transpose`), so a mask drawn on the displayed view lines up with the
decoded frame. Masks are decoded as stored (label files carry no orientation). Masks come back
as ``(H, W)`` class ids: ``uint8`` when every valid id and the ignore index fit in 0..255,
``int16`` otherwise (e.g. ``ignore_index=-1``). Every failure raises :class:`FrameError`
(images) or :class:`LabelError` (masks) naming the item.
"""

from __future__ import annotations

import io as _io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rayal.data.errors import FrameError, LabelError
from rayal.data.io import read_bytes

__all__ = [
    "DataWarning",
    "decode_image",
    "read_image_size",
    "image_size_of",
    "load_image",
    "decode_mask",
    "load_mask",
    "resize_image",
    "resize_mask",
    "mask_dtype",
]

_SINGLE_CHANNEL_MODES = {"L", "P", "1", "I", "I;16", "I;16L", "I;16B", "I;16N"}
_MAX_LISTED_IDS = 10
_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}          # EXIF orientations that rotate by 90 degrees
_LOW_DEPTH_BITS = 12                # 16-bit frames whose values stay below 2**12 get a warning
_MAX_FRAME_WARNINGS = 3             # per problem and process; then one "not repeated" note
_warned: dict[str, int] = {}


class DataWarning(UserWarning):
    """Input that decodes but is probably not what the user meant (names the frame and value)."""


def warn_data(kind: str, message: str) -> None:
    """Warn ``message`` (a :class:`DataWarning`) at most a few times per ``kind`` and process."""
    count = _warned.get(kind, 0)
    _warned[kind] = count + 1
    if count < _MAX_FRAME_WARNINGS:
        more = " (not repeated for further frames)" if count == _MAX_FRAME_WARNINGS - 1 else ""
        warnings.warn(message + more, DataWarning, stacklevel=3)


def _check_size(size, name: str = "size") -> tuple[int, int] | None:
    """Validate an optional ``(H, W)`` pair of positive ints."""
    if size is None:
        return None
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (height, width), got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"{name} must be positive (height, width), got {size!r}")
    return h, w


def _open(data: bytes, err_cls, what: str, frame_id, uri) -> Image.Image:
    """Open and fully decode ``data`` with PIL, mapping every failure to ``err_cls``."""
    if data is None or len(data) == 0:
        raise err_cls(f"cannot decode {what}: empty data", frame_id=frame_id, uri=uri)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(_io.BytesIO(data))
            img.load()  # force the decode here so truncated files fail now
    except UnidentifiedImageError:
        raise err_cls(f"cannot decode {what}: unrecognised image format", frame_id=frame_id, uri=uri) from None
    except Exception as e:  # truncated / corrupt data: OSError, SyntaxError, ValueError, bomb warning
        raise err_cls(f"cannot decode {what}: {type(e).__name__}: {e}", frame_id=frame_id, uri=uri) from None
    return img


def resize_image(image: np.ndarray, size) -> np.ndarray:
    """Bilinear resize of a ``uint8 (H, W, 3)`` image to ``size=(H, W)`` (PIL)."""
    h, w = _check_size(size)
    if image.shape[:2] == (h, w):
        return image
    return np.array(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def resize_mask(mask: np.ndarray, size) -> np.ndarray:
    """Nearest-neighbour resize of an ``(H, W)`` id map to ``size=(H, W)``; keeps dtype.

    Samples the source at pixel centres (same rule as PIL NEAREST), so no
    new ids are ever created.
    """
    h, w = _check_size(size)
    src_h, src_w = mask.shape[:2]
    if (src_h, src_w) == (h, w):
        return mask
    rows = np.minimum(((np.arange(h) + 0.5) * (src_h / h)).astype(np.intp), src_h - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * (src_w / w)).astype(np.intp), src_w - 1)
    return mask[rows[:, None], cols[None, :]]


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1..8) of an opened image; 1 when absent or unreadable."""
    try:
        value = int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block is no orientation, not a bad frame
        return 1
    return value if 1 <= value <= 8 else 1


def image_size_of(data: bytes, *, frame_id: str | None = None, uri: str | None = None) -> tuple[int, int]:
    """``(H, W)`` of the frame in ``data`` as :func:`decode_image` returns it (EXIF orientation
    applied), read from the header only. Unreadable bytes raise FrameError naming the item."""
    if data is None or len(data) == 0:
        raise FrameError("cannot decode image: empty data", frame_id=frame_id, uri=uri)
    try:
        img = Image.open(_io.BytesIO(data))
        width, height = img.size
    except UnidentifiedImageError:
        raise FrameError("cannot decode image: unrecognised image format", frame_id=frame_id, uri=uri) from None
    except Exception as e:  # noqa: BLE001 - any unreadable header names the frame
        raise FrameError(f"cannot decode image: {type(e).__name__}: {e}", frame_id=frame_id, uri=uri) from None
    return (width, height) if _orientation(img) in _SWAPS_AXES else (height, width)


def read_image_size(uri: str, *, frame_id: str | None = None) -> tuple[int, int]:
    """Read ``uri`` and return its upright ``(H, W)`` (see :func:`image_size_of`)."""
    return image_size_of(read_bytes(uri, frame_id=frame_id), frame_id=frame_id, uri=str(uri))


def _warn_low_depth(arr: np.ndarray, frame_id, uri) -> None:
    """Warn when a 16-bit frame's values use only a small fraction of the 16 bits."""
    top = int(arr.max(initial=0))
    if 0 < top < 2 ** _LOW_DEPTH_BITS:
        name = f"frame {frame_id}" if frame_id is not None else f"frame {uri or '<bytes>'}"
        levels = int(top * 255 / 65535 + 0.5) + 1   # the rounding of the scaling below
        warn_data("low_depth", f"{name}: 16-bit image whose largest value is {top} "
                               f"({top.bit_length()}-bit data); scaled to 8 bits it keeps only "
                               f"{levels} grey level(s). Rescale it to the full 16-bit range "
                               "(or save it as 8-bit) before using it with rayal")


def decode_image(data: bytes, *, frame_id: str | None = None, uri: str | None = None, size=None) -> np.ndarray:
    """Decode PNG/JPEG/... bytes to ``uint8 (H, W, 3)`` RGB, upright.

    An EXIF orientation tag is applied (as labelling tools do), so ``H, W`` are those of the
    displayed image. Grayscale, palette and RGBA (alpha dropped) images are converted to RGB;
    16-bit grayscale is scaled to 8 bits (a :class:`DataWarning` names frames whose values
    use under 12 of the 16 bits). ``size=(H, W)`` resizes bilinearly.
    Undecodable or empty bytes raise FrameError("cannot decode image: ...").
    """
    size = _check_size(size)
    img = _open(data, FrameError, "image", frame_id, uri)
    if _orientation(img) != 1:
        img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        sixteen = img.mode.startswith("I;16") or arr.max(initial=0) > 255
        if sixteen and img.mode != "F":
            _warn_low_depth(arr, frame_id, uri)
        scale = 255.0 / 65535.0 if sixteen else 1.0
        img = Image.fromarray(np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8), mode="L")
    if img.mode != "RGB":
        img = img.convert("RGB")
    if size is not None and img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.BILINEAR)
    return np.array(img, dtype=np.uint8)


def load_image(uri: str, *, frame_id: str | None = None, size=None) -> np.ndarray:
    """Read ``uri`` and decode it: ``uint8 (H, W, 3)``. See :func:`decode_image`."""
    return decode_image(read_bytes(uri, frame_id=frame_id), frame_id=frame_id, uri=str(uri), size=size)


def mask_dtype(num_classes: int, ignore_index: int) -> np.dtype:
    """dtype of decoded masks: uint8 if ids 0..C-1 and ignore_index fit in 0..255, else int16.

    (int32 only for ids beyond the int16 range, which no real label set uses.)
    """
    if 0 <= ignore_index <= 255 and num_classes <= 256:
        return np.dtype(np.uint8)
    if -(2**15) <= ignore_index < 2**15 and num_classes <= 2**15:
        return np.dtype(np.int16)
    return np.dtype(np.int32)


def _webp_is_lossy(data: bytes) -> bool:
    """True when WebP ``data`` holds a lossy (VP8) bitstream rather than a lossless (VP8L) one."""
    pos = 12
    while pos + 8 <= len(data):
        fourcc = data[pos:pos + 4]
        if fourcc == b"VP8 ":
            return True
        if fourcc == b"VP8L":
            return False
        length = int.from_bytes(data[pos + 4:pos + 8], "little")
        pos += 8 + length + (length & 1)
    return False


def lossy_format(data: bytes, img: Image.Image) -> str | None:
    """Name of the lossy encoding of an opened image (``"JPEG"``, ``"lossy WebP"``) or None."""
    if img.format in ("JPEG", "MPO"):
        return "JPEG"
    if img.format == "WEBP" and _webp_is_lossy(data):
        return "lossy WebP"
    return None


def _unknown_ids(mask: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    """Sorted ids in ``mask`` outside [0, num_classes) other than ``ignore_index``."""
    if mask.dtype == np.uint8 or (mask.dtype.kind == "u" and mask.dtype.itemsize <= 2):
        present = np.flatnonzero(np.bincount(mask.ravel()))
    else:
        present = np.unique(mask)
    bad = (present < 0) | (present >= num_classes)
    bad &= present != ignore_index
    return present[bad]


def decode_mask(
    data: bytes,
    *,
    num_classes: int,
    ignore_index: int,
    expected_size=None,
    size=None,
    frame_id: str | None = None,
    uri: str | None = None,
) -> np.ndarray:
    """Decode a label mask to ``(H, W)`` class ids (dtype from :func:`mask_dtype`).

    Args:
        data: encoded single-channel image (PNG mode L, P, I;16, I or 1).
        num_classes: valid ids are ``0 .. num_classes-1``.
        ignore_index: the "void / not labelled" id; also accepted in the mask.
        expected_size: ``(H, W)`` the mask must have before resizing (the
            image's size); a mismatch raises LabelError naming both sizes.
        size: ``(H, W)`` to resize to, nearest-neighbour.

    Raises:
        LabelError: undecodable bytes, a lossy encoding (JPEG, lossy WebP: compression
            artefacts change class ids), multi-channel mask, wrong size, or ids
            outside ``[0, num_classes)`` that are not ``ignore_index`` (lists
            up to 10 of them).
    """
    if int(num_classes) <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes!r}")
    num_classes, ignore_index = int(num_classes), int(ignore_index)
    expected_size = _check_size(expected_size, "expected_size")
    size = _check_size(size)
    img = _open(data, LabelError, "mask", frame_id, uri)
    lossy = lossy_format(data, img)
    if lossy is not None:
        raise LabelError(f"{lossy} mask: lossy compression changes class ids at every edge; "
                         "save masks losslessly (PNG)", frame_id=frame_id, uri=uri)
    if img.mode not in _SINGLE_CHANNEL_MODES:
        raise LabelError(
            f"mask must be single-channel class ids (got PIL mode {img.mode}, {len(img.getbands())} channels)",
            frame_id=frame_id,
            uri=uri,
        )
    mask = np.asarray(img)
    if mask.dtype == bool:
        mask = mask.astype(np.uint8)
    h, w = mask.shape
    if expected_size is not None and (h, w) != expected_size:
        turned = (" (the frame turned by 90 degrees: frames are decoded upright, with their EXIF "
                  "orientation applied as labelling tools show them)") if (w, h) == expected_size else ""
        raise LabelError(
            f"mask size {h}x{w} (HxW) does not match image size {expected_size[0]}x{expected_size[1]}"
            + turned,
            frame_id=frame_id,
            uri=uri,
        )
    bad = _unknown_ids(mask, num_classes, ignore_index)
    if bad.size:
        listed = ", ".join(str(int(v)) for v in bad[:_MAX_LISTED_IDS])
        more = f" and {bad.size - _MAX_LISTED_IDS} more" if bad.size > _MAX_LISTED_IDS else ""
        raise LabelError(
            f"unknown class ids [{listed}]{more} (valid 0..{num_classes - 1}, ignore_index {ignore_index})",
            frame_id=frame_id,
            uri=uri,
        )
    mask = mask.astype(mask_dtype(num_classes, ignore_index), copy=False)
    if size is not None:
        mask = resize_mask(mask, size)
    return np.ascontiguousarray(mask) if mask.flags.writeable else mask.copy()


def load_mask(
    uri: str,
    *,
    num_classes: int,
    ignore_index: int,
    expected_size=None,
    size=None,
    frame_id: str | None = None,
) -> np.ndarray:
    """Read ``uri`` and decode it as a mask; a missing file raises LabelError("missing file")."""
    try:
        data = read_bytes(uri, frame_id=frame_id)
    except FrameError as e:
        raise LabelError(e.reason, frame_id=frame_id, uri=str(uri)) from None
    return decode_mask(
        data,
        num_classes=num_classes,
        ignore_index=ignore_index,
        expected_size=expected_size,
        size=size,
        frame_id=frame_id,
        uri=str(uri),
    )
