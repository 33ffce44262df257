"""URI helpers: one code path for local paths, ``file://``, ``s3://``, ``gs://``.

Plain paths (no ``scheme://``) go to :class:`pyarrow.fs.LocalFileSystem`.
URIs with a scheme go through :meth:`pyarrow.fs.FileSystem.from_uri` (S3, GCS,
HDFS, file); schemes pyarrow does not know (``memory://``, ``az://``, ...)
fall back to fsspec, wrapped as a pyarrow filesystem. Object-store filesystems
are cached per (scheme, bucket, query) because creating one is expensive
(credential and region look-ups).
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
from urllib.parse import unquote, urlsplit

import pyarrow.fs as pafs

from rayal.data.errors import FrameError

__all__ = [
    "has_scheme",
    "resolve_filesystem",
    "read_bytes",
    "write_bytes",
    "join_uri",
    "makedirs",
    "list_files",
    "exists",
    "parent_uri",
]

_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def has_scheme(uri: str) -> bool:
    """True if ``uri`` starts with ``scheme://`` (``s3://b/k``), False for plain paths."""
    return bool(_SCHEME_RE.match(str(uri)))


@functools.lru_cache(maxsize=64)
def _object_store(scheme: str, netloc: str, query: str) -> tuple[pafs.FileSystem, str]:
    """Filesystem for ``scheme://netloc`` plus the fs path of that root."""
    root = f"{scheme}://{netloc}/" + (f"?{query}" if query else "")
    return pafs.FileSystem.from_uri(root)


def resolve_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """Return ``(filesystem, path)`` for a local path or a URI.

    ``path`` is what the filesystem's methods expect: an absolute local path,
    ``bucket/key`` for object stores. Percent-escapes in URIs are decoded;
    spaces are accepted unescaped.
    """
    uri = os.fspath(uri)
    if not isinstance(uri, str) or not uri:
        raise ValueError(f"expected a non-empty path or URI, got {uri!r}")
    if not has_scheme(uri):
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file URI with a remote host is not supported: {uri}")
        return pafs.LocalFileSystem(), unquote(parts.path) or "/"
    try:
        fs, root = _object_store(scheme, parts.netloc, parts.query)
    except ValueError as e:  # pyarrow.ArrowInvalid is a ValueError
        if "Unrecognized filesystem type" not in str(e):
            raise ValueError(f"cannot open filesystem for {uri}: {e}") from e
        return _fsspec_filesystem(uri)
    rel = unquote(parts.path).lstrip("/")
    root = root.rstrip("/")
    return fs, (f"{root}/{rel}" if rel else root or "/")


def _fsspec_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    import fsspec  # local import: only needed for schemes pyarrow lacks

    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as e:
        raise ValueError(f"no filesystem for {uri}: {e}") from e
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def read_bytes(uri: str, *, frame_id: str | None = None) -> bytes:
    """Read a whole file. A missing file raises FrameError(reason="missing file")."""
    fs, path = resolve_filesystem(uri)
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError:
        raise FrameError("missing file", frame_id=frame_id, uri=str(uri)) from None
    except IsADirectoryError:
        raise FrameError("is a directory, not a file", frame_id=frame_id, uri=str(uri)) from None
    except OSError as e:
        # pyarrow reports missing objects on some stores as a generic OSError.
        if "not found" in str(e).lower() or "no such file" in str(e).lower():
            raise FrameError("missing file", frame_id=frame_id, uri=str(uri)) from None
        raise FrameError(f"cannot read file: {e}", frame_id=frame_id, uri=str(uri)) from e


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri``, creating parent directories (local) as needed."""
    fs, path = resolve_filesystem(uri)
    parent = posixpath.dirname(path) if has_scheme(uri) else os.path.dirname(path)
    if parent:
        fs.create_dir(parent, recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(data)


def join_uri(base: str, *parts: str) -> str:
    """Join path segments onto a path or URI (``/`` separators for URIs).

    Parts are relative segments; leading/trailing slashes on them are dropped
    for URIs, so ``join_uri("s3://b/x/", "/y")`` is ``"s3://b/x/y"``.
    """
    base = os.fspath(base)
    parts = tuple(p for p in map(os.fspath, parts) if p)
    if not has_scheme(base):
        return os.path.join(base, *parts)
    out = base.rstrip("/") if not base.endswith("://") else base
    for p in parts:
        p = p.strip("/")
        if p:
            out = out + p if out.endswith("://") else f"{out}/{p}"
    return out


def parent_uri(uri: str) -> str:
    """The directory containing ``uri`` (keeps the scheme): ``s3://b/x/m.parquet`` -> ``s3://b/x``."""
    uri = os.fspath(uri)
    if not has_scheme(uri):
        return os.path.dirname(os.path.abspath(os.path.expanduser(uri)))
    head, sep, _ = uri.rstrip("/").rpartition("/")
    if not sep or head.endswith(":/"):  # "s3://bucket" has no parent inside the store
        return uri.rstrip("/")
    return head


def makedirs(uri: str) -> None:
    """Create a directory and its parents (no-op if it exists; prefixes on object stores)."""
    fs, path = resolve_filesystem(uri)
    fs.create_dir(path, recursive=True)


def exists(uri: str) -> bool:
    """True if a file or directory exists at ``uri``."""
    fs, path = resolve_filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def list_files(uri: str) -> list[tuple[str, str]]:
    """Files directly inside directory ``uri`` as ``(name, uri)`` pairs, sorted by name.

    Raises FileNotFoundError naming the directory if it does not exist, and
    NotADirectoryError if it is a file.
    """
    fs, path = resolve_filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"directory not found: {uri}")
    if info.type != pafs.FileType.Directory:
        raise NotADirectoryError(f"not a directory: {uri}")
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File)
    return [(n, join_uri(uri, n)) for n in names]
