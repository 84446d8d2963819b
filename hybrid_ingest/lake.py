"""The lake as a filesystem, through ``pyarrow.fs``: one adapter for ``file://`` and ``s3://``.

Atomicity is what the exactly-once story rests on. On S3 a PUT (or a completed
multipart upload, which is how pyarrow writes) becomes visible whole. Locally a
file is written under a dot-prefixed temporary name in the same folder and then
renamed, which is atomic on POSIX; readers (DuckDB globs, Spark, our listings)
skip dot- and underscore-prefixed names.
"""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

PARQUET_COMPRESSION = "zstd"


def hidden(name: str) -> bool:
    return name.startswith((".", "_"))


@dataclass
class Lake:
    """A filesystem plus the root path of the lake inside it; all paths given to methods are relative."""

    fs: pafs.FileSystem
    root: str
    scheme: str = "file"

    @classmethod
    def from_uri(cls, uri: str, endpoint_url: str | None = None, region: str | None = None) -> Lake:
        parsed = urlparse(uri)
        if parsed.scheme == "s3":
            kwargs: dict[str, Any] = {"region": region or "us-east-1"}
            if endpoint_url:
                endpoint = urlparse(endpoint_url)
                kwargs.update(
                    endpoint_override=endpoint.netloc, scheme=endpoint.scheme or "http",
                    access_key="testing", secret_key="testing", allow_bucket_creation=True,
                )
            fs: pafs.FileSystem = pafs.S3FileSystem(**kwargs)
            return cls(fs, f"{parsed.netloc}{parsed.path}".rstrip("/"), "s3")
        if parsed.scheme in ("file", ""):
            path = parsed.path if parsed.scheme else uri
            local = pafs.LocalFileSystem()
            local.create_dir(path, recursive=True)
            return cls(local, path.rstrip("/") or "/", "file")
        raise ValueError(f"unsupported lake URI {uri!r} (use file:// or s3://)")

    # -- paths -------------------------------------------------------------------------------------

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel.lstrip('/')}" if rel else self.root

    def uri(self, rel: str = "") -> str:
        """The URI engines and the catalog use for a relative path."""
        return f"{self.scheme}://{self.path(rel)}"

    def rel(self, path: str) -> str:
        return path.removeprefix(self.root).lstrip("/")

    # -- writes ------------------------------------------------------------------------------------

    def _tmp_for(self, path: str) -> str:
        folder, _, name = path.rpartition("/")
        return f"{folder}/.tmp-{uuid.uuid4().hex}-{name}"

    def write_bytes(self, rel: str, data: bytes) -> str:
        """Write a whole object atomically; returns its relative path."""
        path = self.path(rel)
        folder = path.rpartition("/")[0]
        self.fs.create_dir(folder, recursive=True)
        if self.scheme == "s3":
            with self.fs.open_output_stream(path) as out:
                out.write(data)
            return rel
        tmp = self._tmp_for(path)
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        self.fs.move(tmp, path)
        return rel

    def write_json(self, rel: str, doc: Any) -> str:
        return self.write_bytes(rel, json.dumps(doc, indent=2, sort_keys=True, default=str).encode())

    def write_parquet(self, rel: str, table: pa.Table, **options: Any) -> int:
        """Write one Parquet file atomically; returns its size in bytes."""
        buf = io.BytesIO()
        options.setdefault("compression", PARQUET_COMPRESSION)
        pq.write_table(table, buf, **options)
        data = buf.getvalue()
        self.write_bytes(rel, data)
        return len(data)

    # -- reads -------------------------------------------------------------------------------------

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_file(self.path(rel)) as f:
            return bytes(f.read())

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    def exists(self, rel: str) -> bool:
        return bool(self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound)

    def files(self, rel: str, suffix: str = "", recursive: bool = True) -> list[pafs.FileInfo]:
        """Visible files under a folder (hidden and temporary files skipped), sorted by path."""
        selector = pafs.FileSelector(self.path(rel), allow_not_found=True, recursive=recursive)
        infos = [
            i for i in self.fs.get_file_info(selector)
            if i.type == pafs.FileType.File and i.path.endswith(suffix)
            and not any(hidden(part) for part in self.rel(i.path).removeprefix(rel).split("/") if part)
        ]
        return sorted(infos, key=lambda i: i.path)

    def dirs(self, rel: str) -> list[str]:
        """Immediate sub-folder names of a folder."""
        selector = pafs.FileSelector(self.path(rel), allow_not_found=True, recursive=False)
        return sorted(i.base_name for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.Directory)

    def delete_dir(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.delete_dir(self.path(rel))

    def delete_file(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.delete_file(self.path(rel))

    def ensure_dir(self, rel: str) -> None:
        self.fs.create_dir(self.path(rel), recursive=True)
