"""Directory listings: the directories under one backup root with their mode and mtime
(docs/formats.md §9). Encrypted as version-2 manifest blobs by formats/manifests.py; this module
holds the plaintext and the listing id."""

from __future__ import annotations

import base64
import binascii
import hmac
import stat
from dataclasses import dataclass
from typing import Any

from formats.errors import FormatError
from formats.frames import canonical_json, strict_json_object
from formats.keys import KeySet

LISTING_VERSION = 2  # the manifest blob version byte of a listing
LISTING_KIND = "directories"
LISTING_ID_LABEL = b"\x00haven/v2/directories\x00"  # a path never starts with NUL: ids cannot collide
_MAX_MODE = 0xFFFFFFFF


@dataclass(frozen=True)
class DirectoryEntry:
    """One directory as the agent saw it: absolute path, st_mode (S_IFDIR | bits), mtime in ns."""

    path: str
    mode: int
    mtime_ns: int


def _encode_path(path: str) -> bytes:
    # Local import: formats.manifests imports this module.
    from formats.manifests import _path_bytes

    return _path_bytes(path)


def listing_id_for(keys: KeySet, root: str) -> str:
    """The path id under which the listings of `root` are committed (§9.1)."""
    return hmac.digest(keys.path_id_key, LISTING_ID_LABEL + _encode_path(root), "sha256").hex()


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_BAD_PARTS = {b"", b".", b".."}


def _relative(prefix: bytes, path: str) -> bytes:
    """The path below the root (b"" for the root itself), checked as §4 would check it whole."""
    try:
        path_b = path.encode("utf-8", "surrogateescape")
    except (AttributeError, UnicodeEncodeError):
        raise ValueError(f"not a path: {path!r}") from None
    if path_b == prefix.rstrip(b"/") or (prefix == b"/" and path_b == b"/"):
        return b""
    if not path_b.startswith(prefix):
        raise ValueError(f"directory {path!r} is not under the listing's root")
    relative = path_b[len(prefix):]
    if b"\0" in relative or not _BAD_PARTS.isdisjoint(relative.split(b"/")):
        raise ValueError(f"path is not normalized (empty, '.' or '..' component, or NUL): {path!r}")
    return relative


def listing_validate(root: str, entries: list[DirectoryEntry]) -> list[bytes]:
    """The entries' paths relative to the root, as bytes; ValueError unless the listing is valid."""
    prefix = _encode_path(root).rstrip(b"/") + b"/"
    relative = []
    for entry in entries:
        relative.append(_relative(prefix, entry.path))
        if not _is_int(entry.mode) or not 0 <= entry.mode <= _MAX_MODE or not stat.S_ISDIR(entry.mode):
            raise ValueError("a directory mode must be an integer in [0, 2**32) with S_IFDIR set")
        if not _is_int(entry.mtime_ns):
            raise ValueError("mtime_ns must be an integer")
    if any(a >= b for a, b in zip(relative, relative[1:])):
        raise ValueError("listing entries must be sorted by path and unique")
    return relative


def listing_to_json(root: str, entries: list[DirectoryEntry]) -> bytes:
    relative = listing_validate(root, entries)
    return canonical_json({
        "kind": LISTING_KIND,
        "root": base64.b64encode(_encode_path(root)).decode("ascii"),
        "paths": [name.decode("latin-1") for name in relative],
        "modes": [entry.mode for entry in entries],
        "mtimes_ns": [entry.mtime_ns for entry in entries],
    })


def listing_from_json(data: bytes) -> tuple[str, list[DirectoryEntry]]:
    obj = strict_json_object(data)
    try:
        if obj["kind"] != LISTING_KIND:
            raise ValueError(f"unknown listing kind {obj['kind']!r}")
        root_b = base64.b64decode(obj["root"], validate=True)
        root = root_b.decode("utf-8", "surrogateescape")
        paths, modes, mtimes = obj["paths"], obj["modes"], obj["mtimes_ns"]
        if not all(isinstance(v, list) for v in (paths, modes, mtimes)) or not len(paths) == len(modes) == len(mtimes):
            raise ValueError("paths, modes and mtimes_ns must be lists of one length")
        entries = []
        for name, mode, mtime in zip(paths, modes, mtimes):
            if not isinstance(name, str):
                raise ValueError("paths must be strings")
            name_b = name.encode("latin-1")  # UnicodeEncodeError (a ValueError) above U+00FF
            path_b = root_b if not name_b else root_b.rstrip(b"/") + b"/" + name_b
            entries.append(DirectoryEntry(path_b.decode("utf-8", "surrogateescape"), mode, mtime))
        listing_validate(root, entries)
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        raise FormatError(f"malformed directory listing: {type(e).__name__}: {e}") from None
    return root, entries
