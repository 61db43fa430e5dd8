"""The restore's fetch phase split among worker processes (agent/restore_fetch.py's `Share` in each).

When `agent restore` runs on Linux with two or more cores and the restore has many blocks, the
blocks are split among worker processes by block id (each block, with every place it goes to,
belongs to exactly one worker), and each worker fetches its share on its own keep-alive
connection. Threads could not do it: a restore of small files is Python work between short
system calls (open, write, fchmod, utimensat, link), each of which hands the GIL to the next
thread; with four fetch threads in one process ~14 % of the agent's CPU went to those hand-offs
(perf: futex wake and wait) and it used about one core. 50,000 small files on the 2-core
benchmark machine, interleaved runs: four threads 10.8-14.9 s wall, two worker processes
7.8-10.1 s (restic 6.4-8.0 s).

A worker writes and places each file of one small block whose block it owns. A file that has a
temporary (several blocks, or one block over 1 MiB) may have blocks in every worker: workers only
write those blocks into the temporary, and this process seals it (mode, mtime) and places it once
every worker is done, so restore.py's rules and its leftover check hold as before. A worker that
fails, is killed or goes silent fails the restore; files already placed are complete.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import wait

from agent.client import ApiClient, ApiError
from agent.fetching import fetcher_for
from agent.restore_dest import Destination, DestinationError
from agent.restore_fetch import FETCH_WORKERS, FetchFailed, Share, Tally, Target
from formats.keys import KeySet
from formats.reassembly import ReassemblyError

PROCESSES_MAX = 4  # worker processes at most (one per core up to this), one fetch thread each
PROCESSES_MIN_BLOCKS = 512  # fewer blocks than this: one process (a fork costs more than it saves)
PROCESSES_ENV = "HAVEN_RESTORE_PROCESSES"  # a number: exactly that many workers, any restore; 1 = threads here
WORKER_SILENCE_SECONDS = 600.0  # no message from any worker for this long (or a request's timeouts): stop them
PR_SET_PDEATHSIG = 1


def worker_processes(client: ApiClient, blocks: int, *, allowed: bool) -> int:
    """How many worker processes to fetch `blocks` blocks with; 1 means threads in this process.
    `allowed`: the caller may fork (agent restore, whose other threads never fork-share state the
    workers use); the agent's service restores in threads, its other threads hold TLS sessions
    and locks. HAVEN_RESTORE_PROCESSES=N is the operator's choice: N workers, whatever the rest."""
    if not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    told = os.environ.get(PROCESSES_ENV, "")
    if told.isdigit():
        wanted = max(1, int(told))
    elif not allowed or blocks < PROCESSES_MIN_BLOCKS:
        return 1
    else:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
        wanted = min(cores, PROCESSES_MAX)
    if wanted == 1 or not blocks:
        return 1
    if isinstance(client, ApiClient) and fetcher_for(client).proxied:
        return 1  # answers come through httpx's connection, which a forked copy must not touch
    return wanted


def fetch_and_write(client: ApiClient, keys: KeySet, archive_id: str, destination: Destination,
                    targets: list[Target], *, setuid: bool, existing: str, progress: Callable[[int, int], None],
                    processes_allowed: bool = False) -> Tally:
    """Place every target: empty files at once, the others as their last block arrives. The
    targets' assemblies are up to date when this returns (restore.py checks none is left)."""
    here = Share(destination, targets, progress=progress, setuid=setuid, existing=existing)
    for target in targets:
        if target.assembly.complete:  # nothing to fetch (an empty file)
            here.finish(target)
    blocks = len({extent.block_id for target in targets for extent in target.assembly.extents})
    processes = worker_processes(client, blocks, allowed=processes_allowed)
    if processes == 1:
        here.fetch_all(client, keys, archive_id, workers=FETCH_WORKERS)
        return here.tally
    tally = _in_workers(processes, client, keys, archive_id, destination, targets, progress,
                        {"setuid": setuid, "existing": existing})
    for index, (count, nbytes) in tally.written.items():  # this process fetches nothing: it seals and places
        target = targets[index]
        if target.assembly.blocks_written(count, nbytes) and target.identity is not None:
            try:  # its blocks may have come from several workers
                here.finish(target)
            except BaseException:
                destination.temporary_discard(target.parts)  # "complete", so restore.py would not
                raise
    tally.add(here.tally)
    return tally


def _in_workers(processes: int, client: ApiClient, keys: KeySet, archive_id: str, destination: Destination,
                targets: list[Target], progress: Callable[[int, int], None], options: dict) -> Tally:
    context = multiprocessing.get_context("fork")
    workers: list[tuple[multiprocessing.process.BaseProcess, object]] = []
    for stream in (sys.stdout, sys.stderr):  # a worker must not write out what this process buffered
        with contextlib.suppress(Exception):
            stream.flush()
    parent = os.getpid()
    gc.freeze()  # the workers' collections then leave the inherited objects' pages alone (refcounts still do not)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})  # until a worker set its own
    try:
        for number in range(processes):
            reader, writer = context.Pipe(duplex=False)
            try:
                process = context.Process(target=_worker, name=f"haven-restore-{number}", daemon=True,
                                          args=(writer, (number, processes), parent, client, keys, archive_id,
                                                destination, targets, options))
                process.start()
            except BaseException:
                reader.close()
                raise
            finally:
                writer.close()
            workers.append((process, reader))
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        _stop(workers)
        raise
    finally:
        gc.unfreeze()
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    total = Tally()
    silent = max(WORKER_SILENCE_SECONDS, (client.retries + 1) * getattr(client, "timeout", 0))
    try:
        readers = {reader: process for process, reader in workers}
        while readers:
            ready = wait(list(readers), timeout=silent)
            if not ready:
                raise FetchFailed(f"no word from the restore's workers in {silent:.0f} s; stopped them")
            for reader in ready:
                try:
                    kind, value = reader.recv()
                except (EOFError, OSError):  # it exited, or was killed in the middle of a message
                    process = readers.pop(reader)
                    process.join()
                    reader.close()
                    raise FetchFailed(f"a restore worker stopped (exit status {process.exitcode})") from None
                if kind == "progress":
                    progress(*value)
                elif kind == "done":
                    total.add(value)
                    readers.pop(reader).join()
                    reader.close()
                else:  # "error": the worker's exception, or its text with its traceback
                    readers.pop(reader).join()
                    reader.close()
                    raise value if isinstance(value, Exception) else FetchFailed(value)
    except BaseException:
        _stop(workers)
        raise
    return total


def _stop(workers: list) -> None:
    """Stop the workers still running: no more reading (a worker blocked sending gets EPIPE), SIGTERM,
    then SIGKILL for any that did not go."""
    for process, reader in workers:
        reader.close()
        if process.is_alive():
            process.terminate()
    for process, _ in workers:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()


def _worker(connection, worker: tuple[int, int], parent: int, client: ApiClient, keys: KeySet, archive_id: str,
            destination: Destination, targets: list[Target], options: dict) -> None:
    """One worker process: its share of the blocks, on connections of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the restore decides, and stops its workers:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # by SIGTERM, whatever handler the agent set
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    if _LIBC is not None:  # stop with the restore, even a killed one
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the restore died before that took effect
        os._exit(1)
    _inherited.append(client.__dict__.pop("_fetcher", None))  # the parent's idle connections: not ours to use
    lock = threading.Lock()
    progress_files = progress_bytes = 0
    last = time.monotonic()

    def progress(files: int, nbytes: int) -> None:
        nonlocal progress_files, progress_bytes, last
        with lock:
            progress_files += files
            progress_bytes += nbytes
            if nbytes or time.monotonic() - last >= 0.2:  # after each batch, or five times a second
                connection.send(("progress", (progress_files, progress_bytes)))
                progress_files = progress_bytes = 0
                last = time.monotonic()

    try:
        share = Share(destination, targets, progress=progress, worker=worker, **options)
        share.fetch_all(client, keys, archive_id, workers=1)
        with lock:
            if progress_files or progress_bytes:
                connection.send(("progress", (progress_files, progress_bytes)))
        connection.send(("done", share.tally))
    except BaseException as error:  # every failure goes to the restore, which raises it
        with contextlib.suppress(OSError):  # the restore stopped reading: it is stopping us
            connection.send(("error", _sendable(error)))
    finally:
        connection.close()


def _sendable(error: BaseException) -> BaseException | str:
    """An error the restore can raise as itself (ApiError, OSError, FetchFailed...), otherwise its
    text and where it came from (a bug: the worker's traceback)."""
    if isinstance(error, (FetchFailed, OSError, ReassemblyError, DestinationError, ApiError)):
        try:
            pickle.loads(pickle.dumps(error))
            return error
        except Exception:  # noqa: BLE001 - any failure to pickle or rebuild: send the text
            pass
    return "".join(traceback.format_exception(error)).strip()


def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc() if sys.platform.startswith("linux") else None  # loaded before any fork
_inherited: list = []  # kept, never closed or used (closing would only close this process's copies)
