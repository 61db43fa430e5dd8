"""`python -m agent --config DIR COMMAND`: the agent's command line (a thin layer over the library)."""
import argparse
import base64
import getpass
import os
import platform
import socket
import sys
import uuid
from datetime import datetime
from pathlib import Path

from agent.activity.cli import activity_arguments, activity_options, watch_parser
from agent.backup import BackupEngine, scan
from agent.client import ApiClient, ApiError, DeviceDeauthorized
from agent.config import AgentConfig, ConfigError, config_load, config_load_optional, config_save
from agent.keys import KeyMissing, user_key_load, user_key_setup, user_key_wipe
from agent.memory import malloc_arenas_share
from agent.policy import Policy, policy_cache_load, policy_cache_save
from agent.progress import progress_bar
from agent.restore import RestoreConflicts, RestoreError, manifests_at, restore, restore_conflicts, selected
from agent.state import LocalState
from agent.storage import StorageError
from formats.keys import derive_keys
from formats.manifests import manifest_decrypt, path_id_for


def _password() -> str:
    password = os.environ.get("HAVEN_PASSWORD")
    if password:
        return password
    if not sys.stdin.isatty():
        raise SystemExit("error: set HAVEN_PASSWORD or run on a terminal to be asked for the password")
    return getpass.getpass("Haven password: ")


def cmd_enroll(args) -> int:
    previous = config_load_optional(args.config)
    client = ApiClient(args.server, ca_file=args.ca_file)
    deployment_token = args.deployment_token or os.environ.get("HAVEN_DEPLOYMENT_TOKEN")
    if not args.code and not args.user:
        raise SystemExit("error: give --user EMAIL (and a password or --deployment-token), or --code CODE "
                         "from the console")
    enrollment = {"device_name": args.device_name or socket.gethostname(),
                  "os_name": f"{platform.system()} {platform.release()}",
                  "device_id": previous.device_id if previous and previous.server == args.server else None}
    if deployment_token and args.user and not args.code:
        answer = client.enroll_with_token(deployment_token=deployment_token, user_email=args.user, **enrollment)
    else:
        credentials = {"code": args.code} if args.code else {"email": args.user, "password": _password()}
        answer = client.enroll(**credentials, **enrollment)
    config = AgentConfig(
        server=args.server, device_id=answer["device_id"], device_name=args.device_name or socket.gethostname(),
        archive_id=answer["archive_id"], user_id=answer["user_id"], user_email=answer.get("user_email", ""),
        organization_id=answer["organization_id"], token=answer["token"], ca_file=args.ca_file,
    )
    config_save(args.config, config)
    print(f"Enrolled device {config.device_name} ({config.device_id}) for {config.user_email} at {config.server}")
    return _key_setup(args.config, config)


def _key_setup(config_dir: Path, config: AgentConfig) -> int:
    client = ApiClient(config.server, token=config.token, ca_file=config.ca_file)
    try:
        print(f"Key: {user_key_setup(client, config_dir)}.")
    except ApiError as error:
        if error.code != "keystore_unavailable":
            raise
        print(f"warning: {error.detail}. Backups wait until the key is escrowed; run "
              f"`python -m agent --config {config_dir} key-setup` later.", file=sys.stderr)
        return 4
    return 0


def cmd_key_setup(args) -> int:
    return _key_setup(args.config, config_load(args.config))


def cmd_status(args) -> int:
    config = config_load(args.config)
    print(f"server:       {config.server}")
    print(f"user:         {config.user_email}")
    print(f"device:       {config.device_name} ({config.device_id})")
    print(f"archive:      {config.archive_id}")
    client = ApiClient(config.server, token=config.token, ca_file=config.ca_file)
    try:
        device = client.device()
        print(f"server says:  {'authorized' if device['authorized'] else 'deauthorized'}, last seen {device['last_seen_at']}")
    except DeviceDeauthorized:
        print("server says:  this device was DEAUTHORIZED by an administrator")
        return 3
    except ApiError as error:
        print(f"server says:  {error}")
        return 2
    cached = policy_cache_load(args.config)
    try:
        body, etag = client.policy(cached.etag if cached else None)
        policy = cached if body is None else Policy.from_json(body, etag)
        if body is not None:
            policy_cache_save(args.config, body, etag)
        origin = f"effective policy {policy.etag}"
    except ApiError as error:
        policy, origin = cached or Policy(), f"last known policy (the server: {error})"
    print(f"policy:       {origin}")
    for line in policy.describe():
        print(f"  {line}")
    return 0


def cmd_run(args) -> int:
    # Imported here: the service (and watchdog, which its watchers use) is no part of a backup,
    # restore or status command's memory and start-up time.
    from agent.service import ServiceOptions, service_run

    return service_run(args.config, ServiceOptions(
        paths=args.paths, poll_seconds=args.poll, max_backoff=args.max_backoff,
        full_scan_seconds=args.full_scan_hours * 3600, verbose=args.verbose,
        activity=activity_options(args, enabled=not args.no_activity, max_backoff=args.max_backoff)))


def _human(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1024
    return ""


def _session(args):
    config = config_load(args.config)
    client = ApiClient(config.server, token=config.token, ca_file=config.ca_file)
    return config, client, derive_keys(user_key_load(args.config))


def cmd_backup(args) -> int:
    config, client, keys = _session(args)
    state = LocalState(args.config, config.archive_id)
    try:
        engine = BackupEngine(client=client, keys=keys, archive_id=config.archive_id, state=state)
        roots = [os.path.abspath(path) for path in args.paths]
        # The exclusions of the last policy `run` or `status` fetched (none before the first).
        policy = policy_cache_load(args.config) or Policy()
        preview = scan(roots, state.lookup_all(), exclude=policy.exclusions(extra=[str(args.config.resolve())]))
        with progress_bar("Backing up", total_files=len(preview.changed),
                          total_bytes=sum(e.size for e in preview.changed)) as advance:
            engine.on_progress = advance
            summary = engine.run(roots, preview)
    finally:
        state.close()
    rate = summary.bytes_read / summary.seconds / 1e6 if summary.seconds else 0.0
    print(f"backup {'completed' if not summary.errors else 'completed with errors'}: "
          f"{summary.files_scanned} files ({_human(summary.bytes_scanned)}) scanned, "
          f"{summary.files_changed} changed, {summary.files_deleted} deleted, {summary.skipped} skipped; "
          f"{_human(summary.bytes_read)} read, {summary.blocks_sent} blocks ({_human(summary.bytes_sent)}) sent, "
          f"{summary.versions_committed} versions committed in {summary.seconds:.1f}s ({rate:.0f} MB/s)")
    if summary.healed:
        print(f"healed {len(summary.healed)} file(s) the server found damaged: "
              + ", ".join(summary.healed[:20]) + (" ..." if len(summary.healed) > 20 else ""))
    for error in summary.errors[:20]:
        print(f"  warning: {error}", file=sys.stderr)
    return 1 if summary.errors else 0


def _archive_for(client: ApiClient, config: AgentConfig, from_device: str | None) -> str:
    if not from_device:
        return config.archive_id
    matches = [a for a in client.archives() if from_device in (a["device_name"], a["device_id"])]
    if not matches:
        raise SystemExit(f"error: no archive of a device named {from_device!r} for {config.user_email}")
    if len(matches) > 1:
        raise SystemExit(f"error: several devices are named {from_device!r}; give the device id instead")
    return matches[0]["archive_id"]


def _at(value: str | None) -> str | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise SystemExit(f"error: --at {value!r} is not an ISO 8601 time (e.g. 2026-11-23T14:00)") from None
    return (moment.astimezone() if moment.tzinfo is None else moment).isoformat()


_EXISTING_CHOICES = {"o": "overwrite", "s": "skip", "r": "rename", "c": None}


def _ask_existing(conflicts) -> str | None:
    """On a terminal: show what is in the way and ask once for all of it (None: cancel)."""
    print(f"{len(conflicts)} item(s) to restore already exist:", file=sys.stderr)
    for conflict in conflicts[:20]:
        print(f"  {conflict}", file=sys.stderr)
    if len(conflicts) > 20:
        print(f"  ... and {len(conflicts) - 20} more", file=sys.stderr)
    while True:
        try:
            answer = input("[o]verwrite them, [s]kip them, restore beside them [r]enamed, or [c]ancel? ")
        except EOFError:
            return None
        if answer.strip().lower()[:1] in _EXISTING_CHOICES:
            return _EXISTING_CHOICES[answer.strip().lower()[:1]]


def cmd_restore(args) -> int:
    config, client, keys = _session(args)
    archive_id = _archive_for(client, config, args.from_device)
    at = _at(args.at)
    manifests = manifests_at(client, keys, archive_id, at)
    existing = args.existing
    if existing is None:
        conflicts = restore_conflicts(dest=Path(args.to), manifests=manifests, paths=args.paths, at=at)
        if conflicts and sys.stdin.isatty():
            existing = _ask_existing(conflicts)
            if existing is None:
                print("restore cancelled; nothing was written", file=sys.stderr)
                return 1
        elif conflicts:
            raise RestoreConflicts(conflicts)
    prefixes = [os.path.abspath(path) for path in args.paths]
    chosen = [m for m in manifests if not m.is_listing and selected(m.path, prefixes)]
    with progress_bar("Restoring", total_files=len(chosen), total_bytes=sum(m.size for m in chosen)) as advance:
        summary = restore(client=client, keys=keys, archive_id=archive_id, dest=Path(args.to), at=at,
                          paths=args.paths, on_progress=advance, manifests=manifests, existing=existing or "refuse",
                          restore_setuid=args.restore_setuid, processes=True)
    rate = summary.bytes / summary.seconds / 1e6 if summary.seconds else 0.0
    extra = "".join(f", {n} {what}" for n, what in ((summary.directories, "folders"), (summary.skipped, "skipped"),
                                                   (summary.unchanged, "unchanged"), (summary.renamed, "renamed"))
                    if n)
    print(f"restore {'completed' if not summary.errors else 'completed with errors'}: {summary.files} files "
          f"({_human(summary.bytes)}){extra} to {args.to} in {summary.seconds:.1f}s ({rate:.0f} MB/s)")
    for error in summary.errors[:20]:
        print(f"  warning: {error}", file=sys.stderr)
    return 1 if summary.errors else 0


def cmd_versions(args) -> int:
    config, client, keys = _session(args)
    archive_id = _archive_for(client, config, args.from_device)
    path = os.path.abspath(args.path)
    path_id = path_id_for(keys, path)
    versions = client.versions_of_path(archive_id, path_id)
    if not versions:
        print(f"no versions of {path}")
        return 1
    for version in versions:
        manifest = manifest_decrypt(keys, base64.b64decode(version["manifest"]), archive_id=uuid.UUID(archive_id),
                                    path_id=path_id, version_id=uuid.UUID(version["version_id"]))
        what = "deleted" if manifest.deleted else f"{_human(manifest.size):>10}  mode {manifest.mode:o}"
        print(f"{version['committed_at']}  {what}  {version['version_id']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agent", description="Haven endpoint backup agent")
    parser.add_argument("--config", type=Path, required=True, metavar="DIR", help="the agent's private configuration directory")
    commands = parser.add_subparsers(dest="command", required=True)

    enroll = commands.add_parser("enroll", help="enroll this device with a Haven server")
    enroll.add_argument("--server", required=True, help="e.g. https://haven.example.com")
    enroll.add_argument("--user", "--user-email", dest="user", metavar="EMAIL",
                        help="your email; the password comes from HAVEN_PASSWORD or a prompt")
    enroll.add_argument("--deployment-token", metavar="TOKEN",
                        help="enroll without a password (MDM scripts): an administrator's deployment token, with "
                             "--user-email; or set HAVEN_DEPLOYMENT_TOKEN, which keeps it out of process lists")
    enroll.add_argument("--code", help="a one-time code from the console (single sign-on users)")
    enroll.add_argument("--device-name", help="defaults to the host name")
    enroll.add_argument("--ca-file", help="CA bundle to verify a server with a private CA")
    enroll.set_defaults(handler=cmd_enroll)

    status = commands.add_parser("status", help="show this agent's enrollment and what the server says of it")
    status.set_defaults(handler=cmd_status)

    key_setup = commands.add_parser("key-setup", help="obtain or escrow the user key (done by enroll)")
    key_setup.set_defaults(handler=cmd_key_setup)

    backup = commands.add_parser("backup", help="back up files and directories (symlinks are skipped)")
    backup.add_argument("paths", nargs="+", metavar="PATH")
    backup.set_defaults(handler=cmd_backup)

    run = commands.add_parser("run", help="run as a service: back up on the policy's schedule until stopped")
    run.add_argument("paths", nargs="*", metavar="PATH", help="back up these instead of the policy's selection")
    run.add_argument("--poll", type=float, default=30.0, metavar="SECONDS",
                     help="report status and check the policy this often (default 30)")
    run.add_argument("--max-backoff", type=float, default=300.0, metavar="SECONDS",
                     help="longest wait between retries while the server is unreachable (default 300)")
    run.add_argument("--full-scan-hours", type=float, default=24.0, metavar="HOURS",
                     help="walk the whole selection at least this often even if nothing changed (default 24)")
    run.add_argument("--verbose", action="store_true", help="log debug messages")
    run.add_argument("--no-activity", action="store_true", help="do not monitor file activity")
    activity_arguments(run)
    run.set_defaults(handler=cmd_run)

    restore_cmd = commands.add_parser("restore", help="restore files as they were at a point in time")
    restore_cmd.add_argument("--to", required=True, metavar="DEST", help="files land at DEST/<their absolute path>")
    restore_cmd.add_argument("--at", metavar="TIME", help="ISO 8601 time (default: now; local time if no zone)")
    restore_cmd.add_argument("--from-device", metavar="NAME", help="restore another device's archive of yours")
    restore_cmd.add_argument("paths", nargs="*", metavar="PATH", help="only these files or directories")
    existing = restore_cmd.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", dest="existing", action="store_const", const="overwrite",
                          help="replace files (and symlinks) already in the destination")
    existing.add_argument("--skip-existing", dest="existing", action="store_const", const="skip",
                          help="leave what is already in the destination, restore the rest")
    existing.add_argument("--rename", dest="existing", action="store_const", const="rename",
                          help="restore beside what is there as 'name (restored YYYY-MM-DD)'")
    restore_cmd.add_argument("--restore-setuid", action="store_true",
                             help="also restore setuid/setgid bits (and the sticky bit of files)")
    restore_cmd.set_defaults(handler=cmd_restore)

    versions = commands.add_parser("versions", help="list the versions of one file")
    versions.add_argument("path", metavar="PATH")
    versions.add_argument("--from-device", metavar="NAME")
    versions.set_defaults(handler=cmd_versions)

    watch_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    malloc_arenas_share()  # before any thread starts (agent/memory.py)
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except DeviceDeauthorized as error:
        user_key_wipe(args.config)
        print(f"error: {error.detail} The local key was removed.", file=sys.stderr)
        return 3
    except ApiError as error:
        if error.code == "quota_exceeded":
            print(f"error: storage quota exceeded, nothing more was stored: {error.detail}", file=sys.stderr)
            return 2
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ConfigError, KeyMissing, RestoreError, StorageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
