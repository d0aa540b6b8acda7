"""Object-storage URLs as inputs and output folders of a batch: ``s3://bucket/key`` and any other
protocol of fsspec whose implementation is installed (``gs://`` with gcsfs, ``memory://``,
``file://``). A *location* is a local ``Path`` or such a URL, kept as the string the user gave.

fsspec (and s3fs, gcsfs, ...) are imported only when a URL is used: local batches never load them.
The driver only lists, checks and reads records; workers download inputs and upload outputs
themselves (batch.transcribe_job). Connection settings come from the implementation's usual
sources: for s3:// the AWS variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_ENDPOINT_URL`` for an S3-compatible server, ...) or ``~/.aws``. Every operation starts from
a fresh listing cache, so what another process wrote meanwhile is seen.
"""
from __future__ import annotations

import posixpath
import re
import secrets
from pathlib import Path

from timbrescribe.errors import UserError

# "protocol://" at the start of an argument (two letters at least: C:\ is a Windows path).
URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")
# The object written and removed to prove that an output folder can be written.
PROBE_PREFIX = ".timbrescribe-write-test-"
# Fields of an object's info that change when its content does, the first one present is used
# (S3: ETag; GCS: generation; local files: mtime; memory: created); else fsspec's ukey.
VERSION_FIELDS = ("ETag", "generation", "etag", "mtime", "LastModified", "last_modified", "created")


def is_url(location: object) -> bool:
    """Whether ``location`` is a storage URL (a string starting with ``protocol://``)."""
    return isinstance(location, str) and URL_START.match(location) is not None


def location(text: str) -> Path | str:
    """A command-line argument as a location: the URL as given, or a local path."""
    return text if is_url(text) else Path(text)


def child(folder: Path | str, relative: Path) -> Path | str:
    """The location ``relative`` (a relative path) inside ``folder``."""
    if is_url(folder):
        return f"{folder.rstrip('/')}/{relative.as_posix()}"
    return folder / relative


def absolute(location: Path | str) -> Path | str:
    """A local path made absolute, a URL as it is."""
    return location if is_url(location) else Path(location).absolute()


def _filesystem(url: str):
    """(fsspec file system, its path) for ``url``, with an empty listing cache; UserError when the
    protocol is unknown or its implementation is not installed."""
    from importlib.util import find_spec

    protocol = url.split("://", 1)[0].lower()
    if find_spec("fsspec") is None:
        raise UserError(f"{url}: storage URLs need fsspec: pip install 'timbrescribe[s3]'")
    from fsspec.core import url_to_fs
    from fsspec.registry import known_implementations

    try:
        fs, path = url_to_fs(url)
    except ImportError:
        package = known_implementations[protocol]["class"].split(".")[0]
        hint = "'timbrescribe[s3]'" if package == "s3fs" else package
        raise UserError(f"{protocol}:// needs {package}: pip install {hint}") from None
    except ValueError as err:
        raise UserError(f"{url}: not a storage URL that fsspec knows ({err})") from None
    fs.invalidate_cache()
    return fs, path


def _has_buckets(fs) -> bool:
    """Whether the store keeps objects in buckets under key prefixes (S3, GCS, Azure), where
    folders need not be made, rather than in folders from a root (local files, memory)."""
    return not fs.root_marker


def _check_bucket(url: str, fs, path: str, doing: str) -> None:
    """UserError when the store of ``url`` keeps objects in buckets and its bucket is not there
    (or the store does not answer: ``doing`` then says what could not be done)."""
    if not _has_buckets(fs):
        return
    bucket = path.split("/", 1)[0]
    try:
        fs.info(bucket)
    except FileNotFoundError:
        raise UserError(f"{url}: no such bucket '{bucket}'") from None
    except Exception as err:  # noqa: BLE001 - whatever the store's library raises
        raise _store_error(url, doing, err) from None


def _store_error(url: str, doing: str, err: Exception) -> UserError:
    """One line for a failure of the store or of its library (no credentials, no answer, access
    denied, ...) while the command checks ``url`` before any work."""
    from timbrescribe.options import first_line

    reason = err.strerror if isinstance(err, OSError) and err.strerror else first_line(err)
    return UserError(f"{url}: {doing} ({reason})")


def kind(url: str) -> str:
    """"file" or "directory" (a folder or a key prefix) for an input URL; UserError when it is
    neither, its bucket is missing or the store cannot be read."""
    fs, path = _filesystem(url)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        info = None
    except Exception as err:  # noqa: BLE001 - whatever the store's library raises
        raise _store_error(url, "cannot be read", err) from None
    if info is None:
        _check_bucket(url, fs, path, "cannot be read")
        raise UserError(f"{url}: no such object or folder")
    return "directory" if info["type"] == "directory" else "file"


def files_in(url: str, recursive: bool) -> list[str]:
    """Paths (with ``/``) relative to the folder ``url`` of the objects directly in it, or of all
    those under it with ``recursive``."""
    fs, path = _filesystem(url)
    root = path.rstrip("/") + "/"
    try:
        if recursive:
            found = fs.find(path)
        else:
            found = [entry["name"] for entry in fs.ls(path, detail=True) if entry["type"] == "file"]
    except Exception as err:  # noqa: BLE001 - whatever the store's library raises
        raise _store_error(url, "cannot be listed", err) from None
    return [name[len(root):] for name in found if name.startswith(root)]


def prepare_folder(url: str) -> None:
    """Prove that objects can be written under the output folder ``url``: a small probe object
    is written and removed (UserError if not)."""
    fs, path = _filesystem(url)
    _check_bucket(url, fs, path, "cannot write in the output folder")
    try:
        if fs.isfile(path):
            raise UserError(f"{url}: exists and is not a folder")
        if not _has_buckets(fs):
            fs.makedirs(path, exist_ok=True)
        probe = f"{path.rstrip('/')}/{PROBE_PREFIX}{secrets.token_hex(4)}"
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever the store's library raises
        raise _store_error(url, "cannot write in the output folder", err) from None


def identity(url: str) -> dict:
    """What tells that the object at ``url`` changed: its size and version (see VERSION_FIELDS)."""
    fs, path = _filesystem(url)
    info = fs.info(path)
    version = next((str(info[name]) for name in VERSION_FIELDS if info.get(name) is not None), None)
    return {"size": info["size"], "version": version or fs.ukey(path)}


def read_bytes(url: str) -> bytes:
    """The content of the object at ``url``."""
    fs, path = _filesystem(url)
    return fs.cat_file(path)


def download(url: str, target: Path) -> None:
    """Copy the object at ``url`` to the local file ``target``."""
    fs, path = _filesystem(url)
    fs.get_file(path, str(target))


def upload(source: Path, url: str) -> None:
    """Copy the local file ``source`` to ``url``: one put, which object stores make visible whole."""
    fs, path = _filesystem(url)
    if not _has_buckets(fs):
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
    fs.put_file(str(source), path)


def remove(url: str) -> None:
    """Remove the object at ``url`` if it is there."""
    fs, path = _filesystem(url)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass
