"""URI helpers: one code path for local paths, ``file://``, ``s3://``, ``gs://``.

Plain paths (no ``scheme://``) go to :class:`pyarrow.fs.LocalFileSystem`.
URIs with a scheme go through :meth:`pyarrow.fs.FileSystem.from_uri` (S3, GCS,
HDFS, file); schemes pyarrow does not know (``memory://``, ``az://``, ...)
fall back to fsspec, wrapped as a pyarrow filesystem. Object-store filesystems
are cached per (scheme, bucket, query) because creating one is expensive
(credential and region look-ups).

Object stores are configured the standard way, from the environment:
credentials (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``
or the node's role; ``GOOGLE_APPLICATION_CREDENTIALS`` for GCS), region, and
for an S3-compatible store (MinIO, Ceph, a test server) ``AWS_ENDPOINT_URL``,
which pyarrow reads when it builds the filesystem. A failure of the store
itself (missing bucket, bad credentials, no permission) raises a
:class:`StorageError` that names the URI and the likely fix.
"""

from __future__ import annotations

import contextlib
import functools
import os
import posixpath
import re
from urllib.parse import unquote, urlsplit

import pyarrow.fs as pafs

from rayal.data.errors import FrameError

__all__ = [
    "StorageError",
    "BucketNotFoundError",
    "StorageAccessError",
    "storage_errors",
    "file_info",
    "has_scheme",
    "resolve_filesystem",
    "read_bytes",
    "write_bytes",
    "join_uri",
    "makedirs",
    "list_files",
    "exists",
    "remove",
    "parent_uri",
]

_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
# How pyarrow's S3 / GCS filesystems word a missing bucket and refused credentials.
_NO_BUCKET = re.compile(r"NO_SUCH_BUCKET|NoSuchBucket|Bucket '[^']*' not found|bucket does not exist",
                        re.IGNORECASE)
_DENIED = re.compile(r"ACCESS_DENIED|AccessDenied|INVALID_ACCESS_KEY_ID|SIGNATURE_DOES_NOT_MATCH|"
                     r"EXPIRED_TOKEN|InvalidToken|HTTP status 40[13]|PERMISSION_DENIED|UNAUTHENTICATED")


class StorageError(OSError):
    """An object store refused an operation on ``uri`` (the message names it and the fix)."""

    def __init__(self, message: str, uri: str):
        super().__init__(message)
        self.uri = uri

    def __str__(self) -> str:
        return self.args[0]


class BucketNotFoundError(StorageError, FileNotFoundError):
    """The bucket of ``uri`` does not exist (rayal never creates buckets)."""


class StorageAccessError(StorageError, PermissionError):
    """The store rejected the credentials, or they lack a permission, for ``uri``."""


def _storage_error(uri: str, action: str, err: OSError) -> OSError:
    """A :class:`StorageError` naming ``uri`` for a store failure; ``err`` itself otherwise."""
    if not has_scheme(uri) or uri.startswith("file://"):
        return err
    parts = urlsplit(uri)
    bucket = parts.netloc
    text = str(err)
    if _NO_BUCKET.search(text):
        return BucketNotFoundError(f"{uri}: bucket '{bucket}' does not exist ({action}); "
                                   "create it first, rayal never creates buckets", uri)
    if _DENIED.search(text):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        where = f" at endpoint {endpoint}" if endpoint and parts.scheme == "s3" else ""
        hint = ("GOOGLE_APPLICATION_CREDENTIALS or the node's service account" if parts.scheme == "gs"
                else "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the node's IAM role")
        return StorageAccessError(f"{uri}: access denied ({action}){where}: check the credentials "
                                  f"({hint}) and their permissions on bucket '{bucket}' [{text}]", uri)
    return StorageError(f"{uri}: {action} failed: {text}", uri)


@contextlib.contextmanager
def storage_errors(uri: str, action: str):
    """Re-raise object-store failures inside the block as a :class:`StorageError` naming ``uri``.

    Local paths and missing files / directories keep their usual exceptions.
    """
    try:
        yield
    except (StorageError, FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise
    except OSError as err:
        translated = _storage_error(os.fspath(uri), action, err)
        if translated is err:
            raise
        raise translated from err


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


_buckets_seen: set[tuple[str, str, str]] = set()   # (scheme, bucket, query) known to exist


def check_bucket(uri: str) -> None:
    """Raise BucketNotFoundError when ``uri`` is in an object store whose bucket is missing.

    Stores report a missing bucket like a missing object, so without this every frame of a
    misspelt bucket would be quarantined as a missing file. Buckets found are remembered, so
    this costs one request per bucket and process.
    """
    if not has_scheme(uri):
        return
    parts = urlsplit(uri)
    key = (parts.scheme.lower(), parts.netloc, parts.query)
    if key in _buckets_seen or key[0] == "file" or not parts.netloc:
        return
    fs, root = resolve_filesystem(f"{key[0]}://{parts.netloc}/" + (f"?{parts.query}" if parts.query else ""))
    with storage_errors(uri, "reading"):
        missing = fs.get_file_info(root.rstrip("/") or "/").type == pafs.FileType.NotFound
    if missing:
        raise BucketNotFoundError(f"{uri}: bucket '{parts.netloc}' does not exist (reading); "
                                  "check the URI, rayal never creates buckets", uri)
    _buckets_seen.add(key)


def read_bytes(uri: str, *, frame_id: str | None = None) -> bytes:
    """Read a whole file. A missing file raises FrameError(reason="missing file"); a missing
    bucket raises BucketNotFoundError (a configuration problem, not a bad frame)."""
    fs, path = resolve_filesystem(uri)
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError:
        check_bucket(os.fspath(uri))
        raise FrameError("missing file", frame_id=frame_id, uri=str(uri)) from None
    except IsADirectoryError:
        raise FrameError("is a directory, not a file", frame_id=frame_id, uri=str(uri)) from None
    except OSError as e:
        store = _storage_error(os.fspath(uri), "reading", e)
        if isinstance(store, (BucketNotFoundError, StorageAccessError)):
            raise store from e  # the store refused: a configuration problem, not a bad frame
        # pyarrow reports missing objects on some stores as a generic OSError.
        if "not found" in str(e).lower() or "no such file" in str(e).lower():
            check_bucket(os.fspath(uri))
            raise FrameError("missing file", frame_id=frame_id, uri=str(uri)) from None
        raise FrameError(f"cannot read file: {e}", frame_id=frame_id, uri=str(uri)) from e


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri``, creating parent directories (local) as needed."""
    fs, path = resolve_filesystem(uri)
    parent = posixpath.dirname(path) if has_scheme(uri) else os.path.dirname(path)
    with storage_errors(uri, "writing"):
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
    with storage_errors(uri, "creating a directory"):
        fs.create_dir(path, recursive=True)


def file_info(uri: str) -> tuple[pafs.FileSystem, str, pafs.FileInfo]:
    """``(filesystem, path, FileInfo)`` of ``uri``; store failures raise :class:`StorageError`."""
    fs, path = resolve_filesystem(uri)
    with storage_errors(uri, "looking it up"):
        return fs, path, fs.get_file_info(path)


def exists(uri: str) -> bool:
    """True if a file or directory exists at ``uri`` (False in a bucket that does not exist)."""
    return file_info(uri)[2].type != pafs.FileType.NotFound


def remove(uri: str) -> None:
    """Delete the file at ``uri``; no-op when there is none."""
    fs, path, info = file_info(uri)
    if info.type == pafs.FileType.File:
        with storage_errors(uri, "deleting it"):
            fs.delete_file(path)


def list_files(uri: str) -> list[tuple[str, str]]:
    """Files directly inside directory ``uri`` as ``(name, uri)`` pairs, sorted by name.

    Raises FileNotFoundError naming the directory if it does not exist, and
    NotADirectoryError if it is a file.
    """
    fs, path, info = file_info(uri)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"directory not found: {uri}")
    if info.type != pafs.FileType.Directory:
        raise NotADirectoryError(f"not a directory: {uri}")
    with storage_errors(uri, "listing"):
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File)
    return [(n, join_uri(uri, n)) for n in names]
