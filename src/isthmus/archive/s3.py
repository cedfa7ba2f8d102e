"""The S3 blob store: blobs as objects of an S3-compatible bucket (issue 9).

``s3://bucket/prefix`` names the place; optional query parameters tune it:
``endpoint`` (else the standard ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``, else AWS),
``region``, ``retry_timeout`` and ``timeout`` (seconds).  Credentials come from the
standard AWS variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``), else from the shared credentials file's profile (``AWS_PROFILE``,
default ``default``), else from the container or instance role, as every AWS tool does.
The client is obstore (Rust's object_store): docs/architecture.md says why.

The guarantees are the file store's:

- **Whole or nothing.** `put` is one PUT request whose payload is the buffers the
  archive already holds (the reassembled C-STORE data set, STOW-RS's memory-mapped
  spool), passed without a copy.  S3 makes an object visible only once it has received
  all of it and checked the request's signature over its SHA-256 (SigV4 signed
  payload), and a PUT either replaces the whole object or changes nothing.  No
  multipart upload is ever started, so an interrupted store leaves neither a partial
  object nor an incomplete upload behind (no upload to abort, nothing for `sweep`).
  One PUT takes up to 5 GiB, S3's limit; larger blobs are refused before anything is
  sent.
- **Durable on success.** S3 answers 200 only once the object is stored durably, so
  `put` returns after that answer and `sync` has nothing left to do.
- **Bounded in time.** Requests time out (`timeout`, 30 s; a large PUT gets the time to
  send at 8 MB/s; connect: 5 s; a GET asks for at most 64 MiB); 5xx answers,
  dropped connections and timeouts of idempotent requests are retried with
  exponential backoff and jitter for at most `retry_timeout` seconds; then the call
  raises `BlobStoreUnavailable` (and for as long again later calls are not retried, so a
  retrieve of many instances fails fast during an outage), which a store reports as out of resources (C-STORE
  0xA700, a STOW-RS failed instance with reason 0xA700): the sender may try later.
- **Streaming reads.** `open` returns a seekable binary file that reads by HTTP range
  (the first GET brings the head of the object; frames and bulk data are then read
  from the stored pixel offset without fetching the rest).
"""

from __future__ import annotations

import configparser
import errno
import io
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlparse

import obstore
from obstore.exceptions import BaseError, NotFoundError
from obstore.store import S3Store

from isthmus.archive.blob import BlobStoreUnavailable, NoLocalPath, check_key

log = logging.getLogger(__name__)

MAX_PUT = 5 * 1024**3  # S3's limit on one PUT request
HEAD = 1024 * 1024  # the first GET of `open` brings this much (a whole CT or MR image)
BUFFER = 256 * 1024  # later reads are coalesced into ranged GETs of at least this
RETRY_TIMEOUT = 15.0
TIMEOUT = 30.0  # seconds for one request (a GET reads at most READ_MAX)
CONNECT_TIMEOUT = 5.0
MIN_RATE = 8e6  # bytes/s: the slowest upload a large PUT is given time for
READ_MAX = 64 * 1024 * 1024  # the largest range one GET asks for


class S3BlobStore:
    """Blobs as objects under one prefix of an S3 bucket (module docstring: guarantees)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str | None = None,
        retry_timeout: float = RETRY_TIMEOUT,
        timeout: float = TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if env is None else env
        self.bucket, self.prefix = bucket, prefix.strip("/")
        endpoint = endpoint or environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
        config: dict[str, Any] = {}
        if endpoint:
            config["endpoint"] = endpoint
        region = region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
        config.update(_profile(environ, region))
        if region:
            config["region"] = region
        self.endpoint = endpoint or "AWS"
        self._config, self._retry_timeout, self.timeout = config, retry_timeout, timeout
        self.store = self._client(timeout)
        # After a call failed its whole retry budget, S3 is presumed down for as long
        # again: calls then go through `_quick` (no retries), so a C-MOVE of a study
        # during an outage fails each instance at once, and the first call that
        # succeeds ends the outage.
        self._quick = self._client(timeout, retries=False)
        self._down_until = 0.0

    def _client(self, timeout: float, retries: bool = True) -> S3Store:
        """A client whose requests time out after `timeout` seconds (connect: 5 s) and
        are retried, with backoff, for at most `retry_timeout` seconds in all."""
        endpoint = self._config.get("endpoint", "")
        backoff = min(5.0, max(self._retry_timeout / 4, 0.1))
        return S3Store(
            self.bucket,
            prefix=self.prefix or None,
            config=self._config,  # type: ignore[arg-type]
            client_options={
                "allow_http": endpoint.startswith("http://"),
                "timeout": timedelta(seconds=timeout),
                "connect_timeout": timedelta(seconds=CONNECT_TIMEOUT),
            },
            retry_config={
                "max_retries": 100 if retries else 0,  # bounded by retry_timeout instead
                "retry_timeout": timedelta(seconds=self._retry_timeout),
                "backoff": {
                    "init_backoff": timedelta(milliseconds=100),
                    "max_backoff": timedelta(seconds=backoff),
                    "base": 2,
                },
            },
        )

    def _client_for(self, size: int) -> S3Store:
        """The client for a PUT of `size` bytes: a large one gets the time to send them
        at MIN_RATE (a 4 GiB instance: 9 minutes), any other `timeout`."""
        seconds = size / MIN_RATE
        return self._now() if seconds <= self.timeout else self._client(seconds)

    def _now(self) -> S3Store:
        """The client to use now: without retries while S3 is presumed down."""
        return self._quick if time.monotonic() < self._down_until else self.store

    @contextmanager
    def _call(self, what: str, missing: Exception | None = None) -> Iterator[None]:
        """`_errors`, and the outage bookkeeping: a failure starts (or extends) one, a
        success ends it."""
        down = time.monotonic() < self._down_until
        try:
            with _errors(what + (" (not retried: S3 failed moments ago)" if down else ""), missing):
                yield
        except BlobStoreUnavailable:
            self._down_until = time.monotonic() + self._retry_timeout
            raise
        self._down_until = 0.0

    def __repr__(self) -> str:
        return f"S3BlobStore(s3://{self.bucket}/{self.prefix} at {self.endpoint})"

    # ------------------------------------------------------------------ write
    def put(self, key: str, chunks: Iterable[bytes | memoryview], sync: bool = True) -> int:
        """One PUT of the chunks (no copy); returns once S3 acknowledged the whole object."""
        check_key(key)
        parts = [memoryview(c).cast("B") for c in chunks]
        size = sum(len(p) for p in parts)
        if size > MAX_PUT:
            raise OSError(errno.EFBIG, f"blob of {size} bytes exceeds S3's 5 GiB PUT limit")
        with self._call(f"PUT {key}"):
            obstore.put(self._client_for(size), key, iter(parts), use_multipart=False)
        return size

    def sync(self, key: str) -> None:
        """Nothing to do: S3 acknowledged the PUT only once the object was durable."""

    # ------------------------------------------------------------------- read
    def open(self, key: str) -> BinaryIO:
        """A seekable binary file over the object, read by ranged GETs; KeyError if absent."""
        check_key(key)
        try:
            with self._call(f"GET {key}", missing=KeyError(key)):
                result = obstore.get(self._now(), key, options={"range": (0, HEAD)})
                size = int(result.meta["size"])
                head = bytes(result.bytes())
        except _EmptyRange:  # an empty object has no byte range to ask for
            size, head = self.size(key), b""
        raw = _RangedReader(self, key, size, head)
        return io.BufferedReader(raw, buffer_size=BUFFER)

    def size(self, key: str) -> int:
        check_key(key)
        with self._call(f"HEAD {key}", missing=KeyError(key)):
            return int(obstore.head(self._now(), key)["size"])

    def keys(self) -> Iterator[str]:
        for key, _size in self.sizes():
            yield key

    def sizes(self) -> Iterator[tuple[str, int]]:
        """(key, size) of every object under the prefix, from the listing (no HEADs)."""
        with self._call("LIST"):
            for batch in obstore.list(self._now(), chunk_size=1000):
                for meta in batch:
                    try:
                        key = check_key(meta["path"])
                    except ValueError:
                        continue  # not a key the archive writes: not its object to judge
                    yield key, int(meta["size"])

    def modified(self, key: str) -> float:
        check_key(key)
        with self._call(f"HEAD {key}", missing=KeyError(key)):
            return float(obstore.head(self._now(), key)["last_modified"].timestamp())

    def close(self) -> None:
        """Nothing held open: the client's connections go with it."""

    def check(self) -> None:
        """Readiness (/readyz): S3 answers a listing with these credentials."""
        with self._call("LIST"):
            next(iter(obstore.list(self._now(), chunk_size=1)), None)

    def local_path(self, key: str) -> str:
        raise NoLocalPath(f"{self!r} keeps no local files; read blob {key} with open()")

    # ----------------------------------------------------------------- remove
    def delete(self, key: str) -> None:
        """Remove an object (absent ones are ignored).  When S3 cannot be reached the
        object stays, as an orphan the next `Archive.check()` removes; never raises."""
        check_key(key)
        try:
            with self._call(f"DELETE {key}"):
                obstore.delete(self._now(), key)
        except OSError as exc:
            log.warning("blob %s not deleted (check() will remove it): %s", key, exc)

    def sweep(self, older_than: float = 0.0) -> int:
        """Leftovers of interrupted writes: none can exist (one PUT per blob, no
        multipart upload), so nothing to remove."""
        return 0


class _RangedReader(io.RawIOBase):
    """The raw side of `S3BlobStore.open`: the head of the object fetched at open, then
    one ranged GET per read that goes past it (BufferedReader coalesces small reads)."""

    def __init__(self, owner: S3BlobStore, key: str, size: int, head: bytes) -> None:
        super().__init__()
        self._owner, self._key, self._size, self._head = owner, key, size, head
        self._pos = 0
        self.name = key  # what io.BufferedReader.name (and pydicom) report

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, "negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._read(self._pos, min(len(view), max(0, self._size - self._pos)))
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def readall(self) -> bytes:
        data = self._read(self._pos, max(0, self._size - self._pos))
        self._pos += len(data)
        return data

    def _read(self, start: int, length: int) -> bytes:
        """`length` bytes from `start`: from the head, else by GETs of at most READ_MAX."""
        if length <= 0:
            return b""
        if start + length <= len(self._head):
            return self._head[start : start + length]
        pieces = []
        with self._owner._call(f"GET {self._key}"):
            for first in range(start, start + length, READ_MAX):
                size = min(READ_MAX, start + length - first)
                client = self._owner._now()
                pieces.append(obstore.get_range(client, self._key, start=first, length=size))
        return b"".join(pieces)


@contextmanager
def _errors(what: str, missing: Exception | None = None) -> Iterator[None]:
    """Turn obstore's errors into the blob store's: a missing object into `missing`
    (when given) or FileNotFoundError, anything else (after obstore's bounded retries)
    into `BlobStoreUnavailable`, an OSError whose text says what failed."""
    try:
        yield
    except (FileNotFoundError, NotFoundError):
        if missing is not None:
            raise missing from None
        raise FileNotFoundError(errno.ENOENT, f"S3 {what}: no such object") from None
    except (BlobStoreUnavailable, _EmptyRange):
        raise
    except (BaseError, OSError) as exc:
        summary = str(exc).split("\n", 1)[0][:300]
        if "416 Range Not Satisfiable" in summary:
            raise _EmptyRange(errno.EINVAL, summary) from exc
        raise BlobStoreUnavailable(errno.EIO, f"S3 {what} failed: {summary}") from exc


class _EmptyRange(OSError):
    """S3 answered 416: the range asked for is not in the object (an empty object)."""


def _profile(env: Mapping[str, str], region: str | None) -> dict[str, str]:
    """Static keys of the shared credentials file's profile, when no key is in the
    environment (the AWS CLI's files: AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE)."""
    if env.get("AWS_ACCESS_KEY_ID"):
        return {}
    name = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"
    home = Path(env.get("HOME", "~")).expanduser()
    credentials = _ini(env.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws/credentials")
    config = _ini(env.get("AWS_CONFIG_FILE") or home / ".aws/config")
    found = credentials.get(name, {})
    settings = config.get(name if name == "default" else f"profile {name}", {})
    out = {}
    if found.get("aws_access_key_id") and found.get("aws_secret_access_key"):
        out["access_key_id"] = found["aws_access_key_id"]
        out["secret_access_key"] = found["aws_secret_access_key"]
        if found.get("aws_session_token"):
            out["token"] = found["aws_session_token"]
    if not region and settings.get("region"):
        out["region"] = settings["region"]
    return out


def _ini(path: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as exc:
        log.warning("cannot read %s: %s", path, exc)
        return {}
    return {section: dict(parser[section]) for section in parser.sections()}


def open_s3_blob_store(url: str) -> S3BlobStore:
    """`S3BlobStore` from ``s3://bucket/prefix?endpoint=…&region=…&retry_timeout=…&timeout=…``."""
    parsed = urlparse(url)
    if not parsed.netloc:
        raise ValueError(f"blob store URL {url!r} names no bucket (s3://bucket/prefix)")
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    unknown = set(query) - {"endpoint", "region", "retry_timeout", "timeout"}
    if unknown:
        raise ValueError(f"blob store URL {url!r}: unknown parameter(s) {sorted(unknown)}")
    try:
        retry_timeout = float(query.get("retry_timeout", RETRY_TIMEOUT))
        timeout = float(query.get("timeout", TIMEOUT))
    except ValueError as exc:
        raise ValueError(f"blob store URL {url!r}: {exc}") from None
    return S3BlobStore(
        parsed.netloc,
        parsed.path,
        endpoint=query.get("endpoint"),
        region=query.get("region"),
        retry_timeout=retry_timeout,
        timeout=timeout,
    )
