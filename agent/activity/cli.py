"""`python -m agent --config DIR watch` and the activity options `agent run` shares with it."""
import argparse
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

from agent.activity.classify import REMOVABLE_ROOTS
from agent.config import config_load
from agent.keys import user_key_wipe
from agent.policy import Policy, policy_cache_load

if TYPE_CHECKING:
    from agent.activity.monitor import ActivityOptions

log = logging.getLogger("haven.agent")
EXIT_DEAUTHORIZED, EXIT_LOCKED = 3, 5


def activity_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("file activity")
    group.add_argument("--removable-root", action="append", metavar="DIR",
                       help=f"where removable media appear (repeatable; default {', '.join(REMOVABLE_ROOTS)})")
    group.add_argument("--cloud-root", action="append", metavar="DIR",
                       help="a cloud-sync folder (repeatable; default: the Dropbox, OneDrive, Google Drive, "
                            "iCloud Drive and Box folders found in the home directory)")
    group.add_argument("--batch-seconds", type=float, default=5.0, help="send events at least this often (5)")
    group.add_argument("--batch-events", type=int, default=2000, help="or every this many events (2000, max 5000)")
    group.add_argument("--queue-max-mb", type=float, default=64.0,
                       help="disk for undelivered events; past it the oldest are dropped and counted (64)")
    group.add_argument("--hash-max-mb", type=float, default=256.0, help="hash files up to this size (256)")
    group.add_argument("--mass-threshold", type=int, default=20,
                       help="renamed or encrypted-looking files within a minute that make a mass event (20)")


def activity_options(args, *, enabled: bool = True, max_backoff: float = 300.0) -> "ActivityOptions":
    from agent.activity.monitor import ActivityOptions  # watchdog and the monitor only for `run` and `watch`

    return ActivityOptions(
        enabled=enabled, removable_roots=args.removable_root, cloud_roots=args.cloud_root,
        batch_seconds=args.batch_seconds, batch_events=args.batch_events,
        queue_max_bytes=int(args.queue_max_mb * 1024 * 1024), hash_max_bytes=int(args.hash_max_mb * 1024 * 1024),
        mass_threshold=args.mass_threshold, max_backoff=max_backoff)


def cmd_watch(args) -> int:
    from agent.activity.monitor import ActivityMonitor, MonitorLocked
    from agent.service import logging_setup  # the service's log file and format

    config = config_load(args.config)
    logging_setup(args.config, verbose=args.verbose)
    policy = policy_cache_load(args.config) or Policy()
    roots = sorted({os.path.abspath(p) for p in args.paths}) or policy.roots()
    stop, deauthorized = threading.Event(), threading.Event()

    def on_deauthorized() -> None:
        deauthorized.set()
        stop.set()

    try:
        monitor = ActivityMonitor(args.config, config, activity_options(args, max_backoff=args.max_backoff),
                                  roots=roots, on_deauthorized=on_deauthorized)
    except MonitorLocked as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_LOCKED
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    monitor.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        monitor.stop()
    if deauthorized.is_set():
        user_key_wipe(args.config)
        log.error("this device was deauthorized by an administrator: the local key was removed; stopping")
        return EXIT_DEAUTHORIZED
    return 0


def watch_parser(commands) -> None:
    watch = commands.add_parser("watch", help="monitor file activity (removable media, cloud sync, mass "
                                              "renames or encryption) and send it to the server until stopped")
    watch.add_argument("paths", nargs="*", metavar="PATH", help="watch these instead of the policy's selection")
    watch.add_argument("--max-backoff", type=float, default=300.0, metavar="SECONDS",
                       help="longest wait between retries while the server is unreachable (default 300)")
    watch.add_argument("--verbose", action="store_true", help="log debug messages")
    activity_arguments(watch)
    watch.set_defaults(handler=cmd_watch)
