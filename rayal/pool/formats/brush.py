"""Label Studio's brush RLE: the bit-packed run-length format of ``thi.ng/rle-pack`` that Label
Studio stores ``brushlabels`` results in (``value.rle``: a list of byte values).

The encoded array is the RGBA image of the brush layer flattened row-major (``H * W * 4``
values, 8-bit words); Label Studio reads the alpha channel, so a binary mask is encoded with
every channel of a painted pixel at 255 (as ``label_studio_sdk.converter.brush.mask2rle``).

Stream: a 32-bit element count, the word size minus one (5 bits), four run-length field widths
minus one (4 bits each), then chunks until the count is reached: a flag bit (1: one word
repeated, 0: literal words), a 2-bit index into the field widths, the chunk length minus one in
that many bits, then the word (repeat) or the chunk's words (literal); zero-padded to a byte.

The encoder here is vectorised (numpy) and follows ``label_studio_sdk``'s encoder (field widths
3, 4, 8, 16; a run of one value is one chunk, a single value a literal of one word): its streams
decode to the same values, byte for byte the same for runs up to 2**16. The decoder reads any
valid stream, including literal chunks of Label Studio's own JavaScript encoder.
"""
from __future__ import annotations

import numpy as np

RLE_SIZES = (3, 4, 8, 16)
WORD = 8
MAX_CHUNK = 1 << 16


class BrushError(ValueError):
    """A brush RLE that does not decode to the expected image: says what is wrong."""


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(run lengths, run values) of a 1-D array."""
    change = np.flatnonzero(values[1:] != values[:-1]) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [values.size]]))
    return lengths, values[starts]


def encode(values: np.ndarray) -> list[int]:
    """A 1-D array of 8-bit values -> brush RLE bytes (list of int 0..255)."""
    values = np.asarray(values).ravel()
    if values.size and (values.min() < 0 or values.max() > 255):
        raise BrushError("brush RLE holds 8-bit values (0..255)")
    values = values.astype(np.int64)
    fields, widths = [values.size, WORD - 1, *(s - 1 for s in RLE_SIZES)], [32, 5, 4, 4, 4, 4]
    head = np.array(fields, np.int64), np.array(widths, np.int64)
    if values.size:
        lengths, vals = _runs(values)
        pieces = np.maximum(-(-lengths // MAX_CHUNK), 1)       # split runs longer than 2**16
        vals = np.repeat(vals, pieces)
        last = lengths - (pieces - 1) * MAX_CHUNK
        chunk = np.full(int(pieces.sum()), MAX_CHUNK, np.int64)
        chunk[np.cumsum(pieces) - 1] = last
        idx = np.searchsorted(np.array([1 << s for s in RLE_SIZES]), chunk)   # smallest width
        idx[chunk == 1] = 0
        size = np.array(RLE_SIZES)[idx]
        # a chunk: flag 1 (repeat; a run of one is a literal of one word, flag 0), index,
        # length - 1, word
        flag = (chunk > 1).astype(np.int64)
        code = (((flag << 2 | idx) << size | (chunk - 1)) << WORD) | vals
        width = 1 + 2 + size + WORD
        codes = np.concatenate([head[0], code])
        widths = np.concatenate([head[1], width])
    else:
        codes, widths = head
    shifts = np.arange(31, -1, -1)
    bits = (codes[:, None] >> shifts) & 1
    keep = shifts[None, :] < widths[:, None]
    return np.packbits(bits[keep].astype(np.uint8)).tolist()


def decode(data, expected: int | None = None) -> np.ndarray:
    """Brush RLE bytes -> 1-D uint8 array. ``expected``: the element count the caller needs
    (``H * W * 4``); checked before anything is allocated. Raises :class:`BrushError`."""
    try:
        raw = np.asarray(data, dtype=np.int64)
    except (TypeError, ValueError):
        raise BrushError("rle must be a list of byte values") from None
    if raw.ndim != 1 or raw.size < 7 or raw.min() < 0 or raw.max() > 255:
        raise BrushError("rle must be a list of at least 7 byte values (0..255)")
    bits = "".join(f"{b:08b}" for b in raw.tolist())
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        if pos + n > len(bits):
            raise BrushError(f"rle ends early (needs {pos + n} bits, has {len(bits)})")
        pos += n
        return int(bits[pos - n:pos], 2) if n else 0

    num = read(32)
    if expected is not None and num != expected:
        raise BrushError(f"rle holds {num} values, the image needs {expected} (width x height x 4)")
    word = read(5) + 1
    if word > 8:
        raise BrushError(f"rle word size {word} bits; brush masks use 8")
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(num, np.uint8)
    i = 0
    while i < num:
        repeat = read(1)
        j = i + 1 + read(sizes[read(2)])
        if j > num:
            raise BrushError(f"rle chunk runs past the {num} values it declares")
        if repeat:
            out[i:j] = read(word)
        else:
            n = j - i
            if pos + n * word > len(bits):
                raise BrushError("rle ends early inside a literal chunk")
            out[i:j] = [int(bits[p:p + word], 2) for p in range(pos, pos + n * word, word)]
            pos += n * word
        i = j
    return out


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """bool (H, W) mask -> brush RLE of its RGBA layer (255 where True), as Label Studio
    stores a ``brushlabels`` result."""
    layer = np.where(np.asarray(mask, bool), 255, 0).astype(np.uint8)
    return encode(np.repeat(layer.ravel(), 4))


def rle_to_mask(data, height: int, width: int) -> np.ndarray:
    """Brush RLE of an RGBA layer -> bool (H, W): pixels whose alpha is non-zero."""
    flat = decode(data, expected=int(height) * int(width) * 4)
    return flat.reshape(int(height), int(width), 4)[:, :, 3] > 0


__all__ = ["BrushError", "encode", "decode", "mask_to_rle", "rle_to_mask"]
