"""Where the scoring job's files live: a local path or an ``s3://bucket/key`` URI.

Both go through ``pyarrow.fs``. The bucket's endpoint comes from ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL`` (the variables boto3, DVC and MLflow read; PyArrow ignores them, so
they are passed explicitly), credentials and region from the usual ``AWS_*`` variables.
A bucket has no rename, so a folder of parts written there is complete when its ``_SUCCESS``
marker exists (the Hadoop/Spark convention); a prefix that already holds objects is refused.
"""

from __future__ import annotations

import fnmatch
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyarrow import fs

from sentiment.fileio import atomic_path
from sentiment.settings import setting

SCHEME = "s3://"
SUCCESS = "_SUCCESS"


@dataclass(frozen=True)
class Location:
    """One file or folder: its filesystem, its path there, and the name the user gave."""

    filesystem: fs.FileSystem
    path: str
    shown: str

    @property
    def on_bucket(self) -> bool:
        return isinstance(self.filesystem, fs.S3FileSystem)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return os.path.splitext(self.name)[1].lower()

    def child(self, name: str) -> Location:
        return Location(self.filesystem, f"{self.path.rstrip('/')}/{name}", f"{self.shown}/{name}")

    def info(self) -> fs.FileInfo:
        return self.filesystem.get_file_info(self.path)

    def open(self) -> Any:
        """A seekable binary file (Parquet needs seeks; pandas takes any file)."""
        return self.filesystem.open_input_file(self.path)


def bucket_filesystem() -> fs.S3FileSystem:
    """The S3 filesystem of this environment's ``AWS_*`` variables."""
    endpoint = setting("AWS_ENDPOINT_URL_S3") or setting("AWS_ENDPOINT_URL")
    options: dict[str, Any] = {"region": setting("AWS_DEFAULT_REGION")}
    if endpoint:
        options["endpoint_override"] = endpoint
        options["scheme"] = "https" if endpoint.startswith("https") else "http"
    return fs.S3FileSystem(**options)


def locate(where: str | os.PathLike[str]) -> Location:
    """A local path or an ``s3://`` URI as a Location."""
    text = os.fspath(where)
    if text.startswith(SCHEME):
        return Location(bucket_filesystem(), text[len(SCHEME) :].rstrip("/"), text.rstrip("/"))
    return Location(fs.LocalFileSystem(), os.path.abspath(text), text)


def matching_files(where: Location, suffixes: tuple[str, ...]) -> list[Location]:
    """The file itself, a folder's files with one of ``suffixes``, or a glob's matches in
    the last path part; sorted by path. Empty when nothing matches."""
    info = where.info()
    if info.type == fs.FileType.File:
        return [where]
    if info.type == fs.FileType.Directory:
        folder, pattern = where.path, "*"
    else:
        folder, _, pattern = where.path.rpartition("/")
        if not any(c in pattern for c in "*?[") or "*" in folder:
            return []
        if where.filesystem.get_file_info(folder).type != fs.FileType.Directory:
            return []
    shown = where.shown if info.type == fs.FileType.Directory else where.shown.rpartition("/")[0]
    found = where.filesystem.get_file_info(fs.FileSelector(folder, recursive=False))
    return [
        Location(where.filesystem, f.path, f"{shown}/{f.base_name}")
        for f in sorted(found, key=lambda f: f.path)
        if f.type == fs.FileType.File
        and fnmatch.fnmatchcase(f.base_name, pattern)
        and os.path.splitext(f.base_name)[1].lower() in suffixes
    ]


@contextmanager
def staged_file(where: Location) -> Iterator[Path]:
    """A local temporary path that becomes ``where`` on success: renamed into place, or
    uploaded as one object (an object appears whole or not at all)."""
    if not where.on_bucket:
        with atomic_path(where.path) as tmp:
            yield tmp
        return
    with tempfile.TemporaryDirectory(prefix="sentiment-upload-") as folder:
        tmp = Path(folder) / where.name
        yield tmp
        fs.copy_files(str(tmp), where.path, destination_filesystem=where.filesystem)


@contextmanager
def parts_folder(where: Location) -> Iterator[Location]:
    """A folder to write parts into, complete with its ``_SUCCESS`` marker only on success:
    locally a temporary folder renamed into place; on the bucket the prefix itself, which
    must be empty and is emptied again on failure."""
    if not where.on_bucket:
        with atomic_path(where.path) as tmp:
            tmp.mkdir()
            folder = Location(where.filesystem, str(tmp), where.shown)
            yield folder
            mark_complete(folder)
        return
    selector = fs.FileSelector(where.path, allow_not_found=True, recursive=True)
    if where.filesystem.get_file_info(selector):
        raise FileExistsError(
            f"{where.shown}: the output prefix already holds objects; pick a new one or "
            "delete it first (a bucket cannot replace a folder atomically)"
        )
    try:
        yield where
    except BaseException:
        where.filesystem.delete_dir_contents(where.path, missing_dir_ok=True)
        raise
    mark_complete(where)


def mark_complete(where: Location) -> None:
    """Write the ``_SUCCESS`` marker: every part under ``where`` is in place."""
    with where.filesystem.open_output_stream(where.child(SUCCESS).path) as marker:
        marker.write(b"")
