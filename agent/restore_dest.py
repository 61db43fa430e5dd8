"""The restore's side of the destination: every operation is relative to a directory file
descriptor opened with O_NOFOLLOW, so a symlink that exists in the destination (planted, or just
the user's own) is never followed — not as a file, and not as a parent directory.

The destination directory itself (`--to`) is the caller's choice and is resolved normally; below
it nothing is resolved by path.
"""
import errno
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

Parts = tuple[str, ...]  # a path below the destination, one name per component

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in for a temporary file must not hang the restore.
FILE_FLAGS = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
SUID_BITS = stat.S_ISUID | stat.S_ISGID
PREALLOCATE = 1024 * 1024  # larger temporaries are sized when created (their blocks arrive in any order)


class DestinationError(Exception):
    """The destination changed under the restore (a symlink or another file appeared)."""


def process_umask() -> int:
    try:  # Linux: read it without changing it (os.umask is process-wide, threads may be running)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def restored_bits(mode: int, *, is_dir: bool, setuid: bool) -> int:
    """The permission bits to set: setuid/setgid (and sticky on a file) only when asked."""
    bits = stat.S_IMODE(mode)
    if not setuid:
        bits &= ~SUID_BITS
        if not is_dir:
            bits &= ~stat.S_ISVTX
    return bits


def directory_cache_size() -> int:
    """Directory descriptors to keep open: blocks arrive in pack order, which follows the backup's
    walk only roughly, so a tree's recent directories are revisited often; a quarter of the
    descriptor limit (256 on macOS by default, often 1,024 or more on Linux), at most 1,024."""
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 128
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft // 4))


def temporary_name(name: str) -> str:
    return f".{name}.haven-restore"


def _temporary_create(parent: int, name: str) -> int:
    """A new private (0600) file `name` in the directory `parent`, open for writing; a file (or
    symlink, itself) of that name left by an interrupted restore is removed first."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, 0o600, dir_fd=parent)
    except FileExistsError:
        os.unlink(name, dir_fd=parent)
        return os.open(name, flags, 0o600, dir_fd=parent)


class Destination:
    """Directory descriptors below the destination, opened component by component with
    O_NOFOLLOW and kept in a small LRU cache (trees have more directories than a process has
    descriptors). Thread-safe: the fetch workers write blocks through it."""

    def __init__(self, root: Path, *, cache_size: int | None = None):
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._fds: OrderedDict[Parts, int] = OrderedDict()
        self._busy: dict[Parts, int] = {}
        self._lock = threading.Lock()
        self._cache_size = directory_cache_size() if cache_size is None else cache_size

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
        os.close(self.root_fd)

    def display(self, parts: Parts) -> str:
        return os.path.join(str(self.root), *parts)

    # -- directory descriptors --

    def _get(self, parts: Parts) -> int:
        if not parts:
            return self.root_fd
        fd = self._fds.get(parts)
        if fd is not None:
            self._fds.move_to_end(parts)
            return fd
        parent = self._get(parts[:-1])
        try:
            fd = os.open(parts[-1], DIR_FLAGS, dir_fd=parent)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                raise DestinationError(f"{self.display(parts)} is not a directory (a symlink or a file appeared "
                                       "there during the restore); nothing was written through it") from None
            raise
        self._fds[parts] = fd
        return fd

    def _evict(self) -> None:
        """Close the least recently used descriptors not in use, oldest first: the walk stops at
        the first one it may close each time (a full cache costs O(1) per call, not a list copy)."""
        while len(self._fds) > self._cache_size:
            for parts in self._fds:
                if not self._busy.get(parts):
                    break
            else:
                return  # every cached descriptor is in use: over the limit until one is let go
            os.close(self._fds.pop(parts))

    @contextmanager
    def directory(self, parts: Parts) -> Iterator[int]:
        """A descriptor of the directory `parts`, held open for the block of the `with`."""
        with self._lock:
            fd = self._get(parts)
            self._busy[parts] = self._busy.get(parts, 0) + 1
            self._evict()
        try:
            yield fd
        finally:
            with self._lock:
                self._busy[parts] -= 1
                if not self._busy[parts]:
                    del self._busy[parts]
                self._evict()

    # -- looking --

    def lstat(self, parts: Parts) -> os.stat_result | None:
        """What is at `parts` (not following a symlink there), or None. The parents must be
        real directories (the planner looks top down)."""
        with self.directory(parts[:-1]) as parent:
            try:
                return os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                return None

    # -- changing --

    def remove(self, parts: Parts) -> None:
        """Remove a non-directory (a symlink is removed itself, never its target)."""
        with self.directory(parts[:-1]) as parent:
            os.unlink(parts[-1], dir_fd=parent)

    def make_directory(self, parts: Parts) -> bool:
        """Create a private (0700) directory; False if a real directory is already there."""
        with self.directory(parts[:-1]) as parent:
            try:
                os.mkdir(parts[-1], 0o700, dir_fd=parent)
                return True
            except FileExistsError:
                pass
        with self.directory(parts):  # raises DestinationError unless it is a real directory
            return False

    def temporary_create(self, parts: Parts, size: int) -> tuple[int, int]:
        """Create the file's private (0600) temporary beside it; returns its (device, inode)."""
        return self.temporaries_create([(parts, size)])[0]

    def temporaries_create(self, items: list[tuple[Parts, int]]) -> list[tuple[int, int]]:
        """`temporary_create` for many files in one pass: each directory's descriptor is taken
        once for the run of files in it (callers pass them sorted by path); only files larger
        than PREALLOCATE bytes are sized up front (a small one is written in one write)."""
        identities: list[tuple[int, int]] = []
        index = 0
        while index < len(items):
            folder = items[index][0][:-1]
            with self.directory(folder) as parent:
                while index < len(items) and items[index][0][:-1] == folder:
                    parts, size = items[index]
                    fd = _temporary_create(parent, temporary_name(parts[-1]))
                    try:
                        if size > PREALLOCATE:
                            os.ftruncate(fd, size)
                        st = os.fstat(fd)
                    finally:
                        os.close(fd)
                    identities.append((st.st_dev, st.st_ino))
                    index += 1
        return identities

    def whole_write(self, parts: Parts, data: bytes, *, bits: int, mtime_ns: int, replace: bool) -> bool:
        """A file whose bytes are all here (one block): create its temporary, write it, give it
        its mode and mtime and move it into place, under one directory descriptor and with no
        moment between creating and writing in which the temporary could be swapped (it is
        written through the descriptor that created it). `place`'s answer."""
        name = temporary_name(parts[-1])
        with self.directory(parts[:-1]) as parent:
            fd = _temporary_create(parent, name)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fchmod(fd, bits)
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            except BaseException:
                os.close(fd)
                os.unlink(name, dir_fd=parent)
                raise
            os.close(fd)
            try:
                return self._place(parent, parts, replace=replace)
            except BaseException:  # e.g. a directory where the file goes: no finished copy left behind
                try:
                    os.unlink(name, dir_fd=parent)
                except FileNotFoundError:
                    pass
                raise

    @contextmanager
    def temporary_open(self, parts: Parts, identity: tuple[int, int]) -> Iterator[int]:
        """The temporary created for `parts`, only if it is still the file created then."""
        with self.directory(parts[:-1]) as parent:
            fd = os.open(temporary_name(parts[-1]), FILE_FLAGS, dir_fd=parent)
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) != identity or not stat.S_ISREG(st.st_mode):
                    raise DestinationError(f"{self.display(parts)}: its temporary file was replaced during the "
                                           "restore; nothing was written to it")
                yield fd
            finally:
                os.close(fd)

    def temporary_discard(self, parts: Parts) -> None:
        try:
            with self.directory(parts[:-1]) as parent:
                os.unlink(temporary_name(parts[-1]), dir_fd=parent)
        except (OSError, DestinationError):
            pass

    def place(self, parts: Parts, *, replace: bool) -> bool:
        """Move the finished temporary to its name. With `replace` whatever is there (a file, or
        a symlink itself) is replaced; otherwise nothing is ever overwritten: False if the name
        was taken meanwhile (the temporary is removed)."""
        with self.directory(parts[:-1]) as parent:
            return self._place(parent, parts, replace=replace)

    def _place(self, parent: int, parts: Parts, *, replace: bool) -> bool:
        name, temporary = parts[-1], temporary_name(parts[-1])
        if replace:
            os.replace(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
            return True
        try:  # link + unlink: atomic "create only if absent" (rename would overwrite)
            os.link(temporary, name, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
        except FileExistsError:
            os.unlink(temporary, dir_fd=parent)
            return False
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            # A file system without hard links: check, then rename (a narrow race remains).
            try:
                os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                os.replace(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
                return True
            os.unlink(temporary, dir_fd=parent)
            return False
        os.unlink(temporary, dir_fd=parent)
        return True

    def directory_finish(self, parts: Parts, *, bits: int, mtime_ns: int | None) -> None:
        with self.directory(parts) as fd:
            os.fchmod(fd, bits)
            if mtime_ns is not None:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
