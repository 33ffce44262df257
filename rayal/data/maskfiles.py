"""The one rule for which files in a folder are label masks (folder datasets and ``pool ingest``).

- Extensions are compared case-insensitively (``f.PNG`` is ``f.png``); the stem is the name
  without its last extension, kept as written (frame ids are case-sensitive).
- Lossless single-channel formats are masks: PNG, BMP, TIFF. Lossy *content* under any name
  is refused again when decoded (:func:`rayal.data.decode.decode_mask`).
- Lossy formats (JPEG: ``.jpg .jpeg .jpe .jfif``; WebP, which is usually lossy and always
  decodes as RGB) are refused by name, with the reason: compression changes class ids along
  every edge, so such a mask is never read.
- Any other file is not a mask and is listed with that reason; hidden files (``.name``) are
  skipped silently (``.DS_Store``, editor backups).
- Two usable files with the same stem (``f.png`` and ``f.PNG``) raise ValueError naming both.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["MASK_EXTENSIONS", "LOSSY_MASK_EXTENSIONS", "MaskFiles", "mask_file_status",
           "index_mask_files"]

MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")
LOSSY_MASK_EXTENSIONS = {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG",
                         ".webp": "WebP"}


def mask_file_status(name: str) -> tuple[str, str | None]:
    """``(stem, None)`` for a usable mask file name, ``(stem, reason)`` for a refused one.

    ``reason`` is one line, e.g. ``"JPEG mask: lossy compression changes class ids; save it
    as PNG"``. Hidden files give ``(stem, "hidden file")``.
    """
    stem, ext = os.path.splitext(name)
    ext = ext.lower()
    if name.startswith("."):
        return stem, "hidden file"
    if ext in MASK_EXTENSIONS:
        return stem, None
    if ext in LOSSY_MASK_EXTENSIONS:
        return stem, (f"{LOSSY_MASK_EXTENSIONS[ext]} mask: lossy compression changes class ids; "
                      "save it as PNG")
    shown = ext or "no extension"
    return stem, f"not a mask image ({shown}; masks are {'/'.join(MASK_EXTENSIONS)})"


@dataclass
class MaskFiles:
    """Files of one folder sorted by the rule: ``usable`` stem -> URI; ``refused``
    ``(stem, file name, reason)`` rows (lossy masks and non-mask files; hidden files left out)."""

    directory: str
    usable: dict[str, str] = field(default_factory=dict)
    refused: list[tuple[str, str, str]] = field(default_factory=list)

    def lossy(self, stem: str) -> str | None:
        """The file name of a refused lossy mask for ``stem``, or None."""
        for s, name, reason in self.refused:
            if s == stem and "lossy" in reason:
                return name
        return None


def index_mask_files(files, directory: str) -> MaskFiles:
    """Sort ``(name, uri)`` pairs of ``directory`` (as :func:`rayal.data.io.list_files`
    returns them) into usable and refused mask files; see the module rule."""
    out = MaskFiles(directory)
    for name, uri in files:
        stem, reason = mask_file_status(name)
        if reason == "hidden file":
            continue
        if reason is not None:
            out.refused.append((stem, name, reason))
            continue
        if stem in out.usable:
            first = os.path.basename(out.usable[stem].replace("\\", "/"))
            raise ValueError(f"duplicate mask stem '{stem}' in {directory}: {first} and {name}")
        out.usable[stem] = uri
    return out
