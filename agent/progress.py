"""Progress on a terminal (rich: files, bytes, rate, ETA); a one-line summary otherwise."""
import sys
from contextlib import contextmanager


@contextmanager
def progress_bar(description: str, *, total_files: int, total_bytes: int, enabled: bool | None = None):
    """Yields `advance(files, nbytes)`; draws a bar only when stdout is a terminal."""
    if enabled is None:
        enabled = sys.stdout.isatty()
    if not enabled:
        yield lambda files, nbytes: None
        return
    # Imported only for a terminal: a service's or a script's backups need none of rich.
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns) as bar:
        task = bar.add_task(f"{description} 0/{total_files} files", total=total_bytes)
        done_files = 0

        def advance(files: int, nbytes: int) -> None:
            nonlocal done_files
            done_files += files
            bar.update(task, advance=nbytes, description=f"{description} {done_files}/{total_files} files")

        yield advance
