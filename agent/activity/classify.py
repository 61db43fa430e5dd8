"""What the watcher says about one file: its category, its hash and entropy, and where it lives
(removable media, a cloud-sync folder)."""
import hashlib
import math
import mimetypes
import os
import sys

ENTROPY_SAMPLE = 64 * 1024

# Where removable media appear (Linux udisks, older mounts, macOS).
REMOVABLE_ROOTS = ["/media", "/run/media", "/mnt", "/Volumes"]
# Folder names the sync clients create in the user's home (and macOS's CloudStorage names).
CLOUD_NAMES = ("Dropbox", "OneDrive", "Google Drive", "GoogleDrive", "My Drive", "iCloud Drive", "iCloudDrive",
               "Box", "Box Sync", "Box Drive")
CLOUD_PREFIXES = ("Dropbox", "OneDrive", "GoogleDrive", "Box")  # "OneDrive - Contoso", "GoogleDrive-a@b"

_BY_EXTENSION = {
    "document": "doc docx odt rtf pages md tex wpd",
    "spreadsheet": "xls xlsx xlsm ods csv tsv numbers",
    "presentation": "ppt pptx odp key",
    "pdf": "pdf",
    "image": "jpg jpeg png gif bmp tif tiff heic webp svg raw psd",
    "audio": "mp3 wav flac aac ogg m4a wma",
    "video": "mp4 mov avi mkv wmv webm m4v",
    "archive": "zip 7z rar tar gz tgz bz2 xz zst tbz2 txz iso dmg cab",
    "source_code": "py js ts java c h cpp hpp cs go rs rb php swift kt scala sql sh ps1 pl lua m html css json yaml "
                   "yml toml ipynb",
    "executable": "exe dll so dylib msi app bin com bat cmd jar apk deb rpm pkg",
}
CATEGORY_OF = {ext: category for category, exts in _BY_EXTENSION.items() for ext in exts.split()}
ARCHIVE_EXTENSIONS = {"zip", "7z", "rar"}  # "archive_created": the usual ways to pack files for taking


def extension(path: str) -> str:
    name = os.path.basename(path).lower()
    return name.rsplit(".", 1)[-1] if "." in name.lstrip(".") else ""


def category_of(path: str) -> tuple[str, str]:
    """(category, mime type) from the name; the MIME type's major part decides unknown extensions."""
    mime = mimetypes.guess_type(path, strict=False)[0] or ""
    category = CATEGORY_OF.get(extension(path))
    if category is None:
        major = mime.split("/")[0]
        category = {"image": "image", "audio": "audio", "video": "video", "text": "document"}.get(major, "other")
    return category, mime[:127]


def entropy_of(sample: bytes) -> float:
    """Shannon entropy in bits per byte: ~4-5 for text, ~8 for encrypted or compressed data."""
    if not sample:
        return 0.0
    total = len(sample)
    counts = [sample.count(byte) for byte in range(256)] if total > 4096 else _counts(sample)
    return -sum(c / total * math.log2(c / total) for c in counts if c)


def _counts(sample: bytes) -> list[int]:
    counts = [0] * 256
    for byte in sample:
        counts[byte] += 1
    return counts


def file_facts(path: str, *, hash_max_bytes: int) -> dict | None:
    """Size, SHA-256 (files up to `hash_max_bytes`) and entropy of the first 64 KiB; None when the
    file is gone or unreadable (a temporary file, a locked one)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(ENTROPY_SAMPLE)
            digest = None
            if size <= hash_max_bytes:
                hasher = hashlib.sha256(head)
                for chunk in iter(lambda: handle.read(1024 * 1024), b""):
                    hasher.update(chunk)
                digest = hasher.hexdigest()
    except OSError:
        return None
    return {"size": size, "sha256": digest, "entropy": round(entropy_of(head), 4)}


def file_owner(path: str) -> str:
    """The file owner's account name; the agent's own when it cannot be told."""
    try:
        import pwd

        return pwd.getpwuid(os.stat(path).st_uid).pw_name[:128]
    except (ImportError, KeyError, OSError):
        return os.environ.get("USER") or os.environ.get("USERNAME") or ""


def cloud_roots(home: str | None = None) -> list[str]:
    """The cloud-sync folders present in the user's home (and macOS's CloudStorage / iCloud)."""
    home = home or os.path.expanduser("~")
    found = []
    for parent in (home, os.path.join(home, "Library", "CloudStorage")):
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        found += [os.path.join(parent, n) for n in names
                  if (n in CLOUD_NAMES or n.startswith(CLOUD_PREFIXES)) and os.path.isdir(os.path.join(parent, n))]
    if sys.platform == "darwin":
        icloud = os.path.join(home, "Library", "Mobile Documents", "com~apple~CloudDocs")
        if os.path.isdir(icloud):
            found.append(icloud)
    return sorted(found)


def under(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)
