"""`python -m agent --config DIR COMMAND`: the agent's command line (a thin layer over the library)."""
import argparse
import getpass
import os
import platform
import socket
import sys
from pathlib import Path

from agent.client import ApiClient, ApiError, DeviceDeauthorized
from agent.config import AgentConfig, ConfigError, config_load, config_load_optional, config_save


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
    answer = client.enroll(
        email=args.user, password=_password(), device_name=args.device_name or socket.gethostname(),
        os_name=f"{platform.system()} {platform.release()}",
        device_id=previous.device_id if previous and previous.server == args.server else None,
    )
    config = AgentConfig(
        server=args.server, device_id=answer["device_id"], device_name=args.device_name or socket.gethostname(),
        archive_id=answer["archive_id"], user_id=answer["user_id"], user_email=args.user.lower(),
        organization_id=answer["organization_id"], token=answer["token"], ca_file=args.ca_file,
    )
    config_save(args.config, config)
    print(f"Enrolled device {config.device_name} ({config.device_id}) for {config.user_email} at {config.server}")
    return 0


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
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agent", description="Haven endpoint backup agent")
    parser.add_argument("--config", type=Path, required=True, metavar="DIR", help="the agent's private configuration directory")
    commands = parser.add_subparsers(dest="command", required=True)

    enroll = commands.add_parser("enroll", help="enroll this device with a Haven server")
    enroll.add_argument("--server", required=True, help="e.g. https://haven.example.com")
    enroll.add_argument("--user", required=True, metavar="EMAIL")
    enroll.add_argument("--device-name", help="defaults to the host name")
    enroll.add_argument("--ca-file", help="CA bundle to verify a server with a private CA")
    enroll.set_defaults(handler=cmd_enroll)

    status = commands.add_parser("status", help="show this agent's enrollment and what the server says of it")
    status.set_defaults(handler=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except DeviceDeauthorized as error:
        print(f"error: {error.detail}", file=sys.stderr)
        return 3
    except (ApiError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
