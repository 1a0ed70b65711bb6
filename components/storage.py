"""Where a run keeps what other nodes read: a local path, `file://…`, or `s3://bucket/prefix` (any URI
pyarrow's filesystems resolve). `location(...)` gives a `Location`: a pyarrow filesystem and a path in it,
joined with `/` like a Path, so checkpoints, prepared shards and evaluators are read and written the same
way on a laptop and on a cluster whose nodes share no disk.

S3's endpoint and credentials come from the standard AWS variables only (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_DEFAULT_REGION, or an instance role),
never from params files. Requests are retried with backoff for up to about a minute (S3_RETRY_ATTEMPTS),
so a short outage of the object store delays a checkpoint instead of failing the run."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

# The AWS SDK's standard strategy backs off exponentially (capped at 20 s a wait): 9 attempts wait about
# 60 s in all, which outlasts an object store restart or a 30 s network partition.
S3_RETRY_ATTEMPTS = 9
S3_CONNECT_TIMEOUT_S = 5.0
S3_REQUEST_TIMEOUT_S = 30.0
# the variables an S3 client reads, forwarded to Ray workers that do not have their own (pipelines/launch.py)
S3_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
          "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE")


class StorageError(RuntimeError):
    """A storage URI that cannot be used; the message names the key or variable to fix."""


def is_uri(value: str | os.PathLike) -> bool:
    """True for `scheme://…` (s3, gs, file, …); False for a plain local path."""
    return "://" in str(value)


class _S3(pafs.S3FileSystem):
    """pyarrow's S3FileSystem, pickled as "build one from this process's AWS variables": pyarrow's own pickle
    drops the retry strategy and timeouts, so Ray's workers and Train controller (which get the filesystem
    pickled) would give up after 3 attempts. Rebuilt there, it retries as here and takes the node's
    credentials (the driver forwards its own, pipelines/launch.py), none of which travel in the pickle."""

    def __reduce__(self):
        return s3_filesystem, ()


def s3_filesystem() -> pafs.S3FileSystem:
    """An S3 filesystem configured from the standard AWS variables (endpoint included)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    kwargs: dict = {}
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs.update(endpoint_override=parsed.netloc + parsed.path.rstrip("/"), scheme=parsed.scheme)
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    if region:
        kwargs["region"] = region
    return _S3(**kwargs, connect_timeout=S3_CONNECT_TIMEOUT_S, request_timeout=S3_REQUEST_TIMEOUT_S,
                             retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=S3_RETRY_ATTEMPTS))


@dataclass(frozen=True)
class Location:
    """A folder or file in a filesystem: `fs` and `path` as pyarrow takes them; `uri` as a user writes it."""

    fs: pafs.FileSystem
    path: str
    uri: str

    def __truediv__(self, part: str) -> Location:
        part = str(part).strip("/")
        return Location(self.fs, f"{self.path.rstrip('/')}/{part}", f"{self.uri.rstrip('/')}/{part}")

    def __str__(self) -> str:
        return self.uri

    def __fspath__(self) -> str:  # a local location is a filesystem path (Path(loc), open(loc))
        return str(self.local_path())

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> Location:
        return Location(self.fs, self.path.rstrip("/").rsplit("/", 1)[0], self.uri.rstrip("/").rsplit("/", 1)[0])

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def local_path(self) -> Path:
        if not self.is_local:
            raise StorageError(f"{self.uri} is not on a local filesystem")
        return Path(self.path)

    # ------------------------------------------------------------------ reading
    def _info(self) -> pafs.FileInfo:
        return self.fs.get_file_info(self.path)

    def exists(self) -> bool:
        return self._info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self._info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._info().type == pafs.FileType.Directory

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return f.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def children(self, prefix: str = "") -> list[Location]:
        """Entries directly inside this folder whose names start with `prefix`, sorted by name; none if absent."""
        if not self.is_dir():
            return []
        found = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        return sorted((Location(self.fs, i.path, f"{self.uri.rstrip('/')}/{i.base_name}") for i in found
                       if i.base_name.startswith(prefix)), key=lambda loc: loc.name)

    def size(self) -> int:
        """Bytes under this folder (or of this file)."""
        info = self._info()
        if info.type == pafs.FileType.File:
            return int(info.size)
        return sum(int(i.size or 0) for i in self.fs.get_file_info(pafs.FileSelector(self.path, recursive=True,
                                                                                      allow_not_found=True))
                   if i.type == pafs.FileType.File)

    @contextlib.contextmanager
    def local_copy(self):
        """A local folder with this folder's files: itself when local, else a temporary download."""
        if self.is_local:
            yield self.local_path()
            return
        with tempfile.TemporaryDirectory(prefix="genpipe-copy-") as d:
            pafs.copy_files(self.path, d, source_filesystem=self.fs, destination_filesystem=pafs.LocalFileSystem())
            yield Path(d)

    # ------------------------------------------------------------------ writing
    def write_bytes(self, data: bytes) -> None:
        """One object: on S3 a PUT appears whole or not at all; locally written beside and renamed."""
        if self.is_local:
            from components.atomic import atomic_write

            self.local_path().parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.local_path(), data)
            return
        with self.fs.open_output_stream(self.path) as f:
            f.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def upload(self, local: Path) -> None:
        """A local file or folder's contents copied here."""
        local = Path(local)
        if self.is_local:
            self.local_path().mkdir(parents=True, exist_ok=True)
        if local.is_dir():
            pafs.copy_files(str(local), self.path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=self.fs)
        else:
            self.write_bytes(local.read_bytes())

    def mkdir(self) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def delete_dir(self) -> None:
        if self.is_local:
            shutil.rmtree(self.path, ignore_errors=True)
        elif self.exists():
            self.fs.delete_dir(self.path)


def publish(local_dir: Path, target: Location, last: str) -> Location:
    """Copy a local folder's files to `target`, the file named `last` after all the others: a reader that
    finds `last` finds a whole folder, even if an upload before was cut short. A target that has `last`
    is left as it is."""
    if (target / last).is_file():  # published before (callers name targets by their content)
        return target
    local_dir = Path(local_dir)
    files = sorted(p for p in local_dir.rglob("*") if p.is_file())
    for file in sorted(files, key=lambda p: p.name == last):
        (target / file.relative_to(local_dir).as_posix()).write_bytes(file.read_bytes())
    return target


def location(value: str | os.PathLike | Location, base: Path | None = None) -> Location:
    """A Location for a local path (relative to `base`), `file://…`, `s3://…` or another pyarrow URI."""
    if isinstance(value, Location):
        return value
    text = str(value)
    if not is_uri(text):
        path = Path(text)
        path = (Path(base) / path if base is not None and not path.is_absolute() else path).resolve()
        return Location(pafs.LocalFileSystem(), str(path), str(path))
    scheme = urlparse(text).scheme
    if scheme == "file":
        return location(urlparse(text).path)
    if scheme == "s3":
        parsed = urlparse(text)
        if not parsed.netloc:
            raise StorageError(f"{text}: an s3:// URI names a bucket (s3://bucket/prefix)")
        return Location(s3_filesystem(), f"{parsed.netloc}{parsed.path}".rstrip("/"), text.rstrip("/"))
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except (ValueError, OSError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise StorageError(f"{text}: pyarrow cannot open this URI ({e})") from None
    return Location(fs, path, text.rstrip("/"))


def check_reachable(loc: Location, key: str) -> None:
    """Refuse, before any work, a storage URI whose store cannot be reached, whose credentials are missing,
    or whose bucket does not exist. `key` is what the user set (a params key). Writes nothing."""
    if loc.is_local:
        return
    bucket = loc.path.split("/", 1)[0]
    if isinstance(loc.fs, pafs.S3FileSystem):
        import boto3
        import botocore.exceptions as bx
        from botocore.config import Config

        if boto3.Session().get_credentials() is None:  # the standard chain: variables, profile, role
            raise StorageError(f"{key} = {loc.uri}: no S3 credentials; set AWS_ACCESS_KEY_ID and "
                               "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE / an instance role)")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        s3 = boto3.client("s3", endpoint_url=endpoint or None,
                          config=Config(connect_timeout=S3_CONNECT_TIMEOUT_S, read_timeout=S3_CONNECT_TIMEOUT_S,
                                        retries={"max_attempts": 2, "mode": "standard"}))
        where = endpoint or "AWS S3"
        try:
            s3.head_bucket(Bucket=bucket)
        except bx.EndpointConnectionError:
            raise StorageError(f"{key} = {loc.uri}: the S3 endpoint {where} cannot be reached; check "
                               "AWS_ENDPOINT_URL (and that the object store is up)") from None
        except bx.NoCredentialsError:
            raise StorageError(f"{key} = {loc.uri}: no S3 credentials; set AWS_ACCESS_KEY_ID and "
                               "AWS_SECRET_ACCESS_KEY") from None
        except bx.ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise StorageError(f"{key} = {loc.uri}: the bucket {bucket!r} does not exist at {where}; "
                                   "create it first (genpipe never creates buckets)") from None
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StorageError(f"{key} = {loc.uri}: access to bucket {bucket!r} at {where} is denied ({code}); "
                                   "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket policy") from None
            raise StorageError(f"{key} = {loc.uri}: S3 at {where} answered {code or e}") from None
        except bx.BotoCoreError as e:
            raise StorageError(f"{key} = {loc.uri}: S3 at {where} cannot be used ({e})") from None
        return
    try:
        loc.fs.get_file_info(loc.path)
    except OSError as e:
        raise StorageError(f"{key} = {loc.uri}: cannot be reached ({e})") from None
