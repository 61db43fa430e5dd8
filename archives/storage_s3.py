"""Packs as objects in an S3-compatible bucket (AWS S3, SeaweedFS, MinIO), behind `PackStorage`.

The same contract as `LocalPackStorage`, with S3's means:
- write once: PutObject with `If-None-Match: *`; the store answers 412 if the key exists, so a
  pack is never overwritten even by two writers racing. An object exists only once the store
  acknowledged the whole body, which is the "durable" the upload path waits for before it
  commits the index rows;
- restores and compaction read frames with ranged GETs, never the whole pack;
- the quarantine is a key prefix (`.quarantine/`): copy, then delete the live key; the quarantine
  time is kept in the object's metadata, since a copy's LastModified is the copy time;
- the collector's records live under `.haven/`.

Chosen with HAVEN_PACK_STORAGE=s3://bucket/prefix; boto3 reads its own AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_DEFAULT_REGION.
"""
import os
import secrets
import tempfile
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

from archives.storage import META_DIR, QUARANTINE_DIR, PackExists, PackStat

_QUARANTINED_AT = "haven-quarantined-at"  # x-amz-meta-…: when the retention clock started
_WRITE_TOKEN = "haven-write"  # x-amz-meta-…: tells our own retried PUT from somebody else's object
_SPOOL_IN_MEMORY = 8 << 20  # a pack body larger than this is spooled to a temporary file
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}

_clients: dict[tuple, object] = {}
_clients_lock = threading.Lock()


def s3_client():
    """One boto3 client per process (boto3 clients are thread-safe; building one is not cheap).

    Keyed by pid so a forked worker builds its own instead of sharing the parent's sockets.
    """
    key = (os.getpid(), os.environ.get("AWS_ENDPOINT_URL", ""), os.environ.get("AWS_ACCESS_KEY_ID", ""),
           os.environ.get("AWS_DEFAULT_REGION", ""))
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                import boto3
                from botocore.config import Config

                config = Config(
                    retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=120,
                    max_pool_connections=32,
                    # S3-compatible stores on a host name of their own are addressed by path.
                    s3={"addressing_style": "path" if key[1] else "auto"},
                )
                client = boto3.session.Session().client("s3", config=config)
                _clients[key] = client
    return client


def s3_clients_reset() -> None:
    with _clients_lock:
        _clients.clear()


def parse_s3_url(url: str) -> tuple[str, str]:
    """s3://bucket/prefix -> (bucket, prefix without slashes at its ends)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{url!r} is not s3://bucket/prefix")
    return parts.netloc, parts.path.strip("/")


def _code(error) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _check_key(key: str, *, live: bool) -> None:
    parts = key.split("/")
    if not key or key.startswith("/") or any(part in {"", ".", ".."} for part in parts):
        raise ValueError(f"pack key {key!r} escapes the storage root")
    if live and parts[0].startswith("."):
        raise ValueError(f"pack key {key!r} names a reserved directory")


class _Spool:
    """The parts of a pack body in one seekable file (so botocore can sign it and retry it)."""

    def __init__(self, parts: Iterable[bytes | memoryview]):
        self.file = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)
        self.size = 0
        for part in parts:
            view = memoryview(part).cast("B")
            self.file.write(view)
            self.size += len(view)
        self.file.seek(0)

    def close(self) -> None:
        self.file.close()


class S3PackStorage:
    def __init__(self, bucket: str, prefix: str = "", *, client=None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = client

    @property
    def client(self):
        return self._client or s3_client()

    def _object(self, key: str, *, area: str = "") -> str:
        _check_key(key, live=not area)
        return "/".join(part for part in (self.prefix, area, key) if part)

    def _area_prefix(self, area: str, prefix: str) -> str:
        """The listing prefix of a directory-like `prefix` ("a/b" lists "a/b/…", never "a/bc/…")."""
        if prefix:
            _check_key(prefix.strip("/"), live=not area)
        base = "/".join(part for part in (self.prefix, area, prefix.strip("/")) if part)
        return f"{base}/" if base else ""

    def _get(self, name: str, **extra) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=name, **extra)["Body"].read()
        except ClientError as error:
            if _code(error) in _NOT_FOUND:
                raise FileNotFoundError(name) from None
            if _code(error) == "InvalidRange":
                raise OSError(f"object {name} is shorter than the range {extra.get('Range')}") from None
            raise

    def _head(self, name: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as error:
            if _code(error) in _NOT_FOUND:
                return None
            raise

    def _put_once(self, name: str, parts: Iterable[bytes | memoryview]) -> None:
        from botocore.exceptions import ClientError

        token = secrets.token_hex(16)
        spool = _Spool(parts)
        try:
            self.client.put_object(Bucket=self.bucket, Key=name, Body=spool.file, ContentLength=spool.size,
                                   IfNoneMatch="*", Metadata={_WRITE_TOKEN: token},
                                   ContentType="application/octet-stream")
        except ClientError as error:
            if _code(error) not in {"PreconditionFailed", "412"}:
                raise
            # botocore retries a PUT whose answer was lost; the retry then finds our own object.
            head = self._head(name)
            if head is None or head.get("Metadata", {}).get(_WRITE_TOKEN) != token:
                raise PackExists(name) from None
        finally:
            spool.close()

    def _list(self, prefix: str) -> Iterator[dict]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    def _walk(self, area: str, prefix: str) -> Iterator[tuple[str, dict]]:
        root = "/".join(part for part in (self.prefix, area) if part)
        skip = len(root) + 1 if root else 0
        for item in self._list(self._area_prefix(area, prefix)):
            key = item["Key"][skip:]
            if key.endswith(".pack") and not key.split("/", 1)[0].startswith("."):
                yield key, item

    # --- live packs ---

    def put(self, key: str, parts: Iterable[bytes | memoryview], *, private: bool = False) -> None:
        """Durable once this returns: the store acknowledged the whole object under its final key.
        (`private` is the bucket policy's business here: objects are never public.)"""
        self._put_once(self._object(key), parts)

    def read_at(self, key: str, offset: int, length: int) -> bytes:
        return _ranged(self, self._object(key), key, offset, length)

    def read_all(self, key: str) -> bytes:
        return self._get(self._object(key))

    def keys(self, prefix: str) -> Iterator[str]:
        for key, _item in self._walk("", prefix):
            yield key

    def size(self, key: str) -> int:
        head = self._head(self._object(key))
        if head is None:
            raise FileNotFoundError(key)
        return head["ContentLength"]

    def stats(self, prefix: str) -> Iterator[PackStat]:
        for key, item in self._walk("", prefix):
            yield PackStat(key, item["Size"], item["LastModified"].astimezone(UTC))

    def open_reader(self, key: str) -> "S3PackReader":
        return S3PackReader(self, key)

    def exists(self, key: str) -> bool:
        return self._head(self._object(key)) is not None

    def delete(self, key: str) -> None:
        """Remove a live pack no row references (compaction's own crash leftover); absent is fine."""
        self.client.delete_object(Bucket=self.bucket, Key=self._object(key))

    # --- quarantine: orphan packs kept (same key) until their retention ends ---

    def quarantine(self, key: str, *, at: datetime) -> None:
        """Copy under `.quarantine/`, then delete the live key; the retention clock starts `at`.

        A move interrupted after its copy leaves both; the next call only finishes the delete,
        so the first quarantine time stands.
        """
        from botocore.exceptions import ClientError

        source, target = self._object(key), self._object(key, area=QUARANTINE_DIR)
        if self._head(target) is None:
            try:
                self.client.copy_object(Bucket=self.bucket, Key=target,
                                        CopySource={"Bucket": self.bucket, "Key": source},
                                        MetadataDirective="REPLACE", Metadata={_QUARANTINED_AT: at.isoformat()},
                                        ContentType="application/octet-stream")
            except ClientError as error:
                if _code(error) in _NOT_FOUND:
                    raise FileNotFoundError(key) from None
                raise
        elif self._head(source) is None:
            raise FileNotFoundError(key)
        self.client.delete_object(Bucket=self.bucket, Key=source)

    def quarantined(self, prefix: str) -> Iterator[PackStat]:
        for key, item in self._walk(QUARANTINE_DIR, prefix):
            head = self._head(item["Key"])  # listings carry no metadata
            if head is None:  # deleted or restored since the listing
                continue
            stamp = head.get("Metadata", {}).get(_QUARANTINED_AT)
            at = datetime.fromisoformat(stamp) if stamp else item["LastModified"]
            yield PackStat(key, item["Size"], at.astimezone(UTC))

    def quarantined_read_all(self, key: str) -> bytes:
        return self._get(self._object(key, area=QUARANTINE_DIR))

    def quarantine_restore(self, key: str) -> None:
        """Put a quarantined pack back under its key: a conditional PUT, never over a live pack."""
        quarantined = self._object(key, area=QUARANTINE_DIR)
        self._put_once(self._object(key), [self._get(quarantined)])
        self.client.delete_object(Bucket=self.bucket, Key=quarantined)

    def quarantined_delete(self, key: str) -> None:
        name = self._object(key, area=QUARANTINE_DIR)
        if self._head(name) is None:
            raise FileNotFoundError(key)
        self.client.delete_object(Bucket=self.bucket, Key=name)

    # --- the collector's own small records (replaced whole: a PUT is atomic) ---

    def meta_read(self, name: str) -> bytes | None:
        try:
            return self._get(self._object(name, area=META_DIR))
        except FileNotFoundError:
            return None

    def meta_write(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._object(name, area=META_DIR), Body=bytes(data),
                               ContentType="application/octet-stream")

    def meta_delete(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._object(name, area=META_DIR))


def _ranged(storage: S3PackStorage, name: str, key: str, offset: int, length: int) -> bytes:
    if offset < 0 or length < 0:
        raise ValueError(f"bad range {offset}+{length}")
    if length == 0:
        return b""
    data = storage._get(name, Range=f"bytes={offset}-{offset + length - 1}")
    if len(data) != length:
        raise OSError(f"pack {key} is shorter than its index says ({offset}+{length})")
    return data


class S3PackReader:
    """Several ranged GETs on one pack; the client's connection pool is the "open file"."""

    def __init__(self, storage: S3PackStorage, key: str):
        self._storage, self.key = storage, key
        self._name = storage._object(key)

    def read_at(self, offset: int, length: int) -> bytes:
        return _ranged(self._storage, self._name, self.key, offset, length)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

