"""packaging/: the systemd unit and the launchd plist run `python -m agent --config DIR run`, with
the settings docs/deployment.md promises (restart on failure, hardening, logs)."""
import configparser
import plistlib
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import build_parser, cmd_run
from agent.service import EXIT_DEAUTHORIZED, EXIT_LOCKED

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "packaging" / "systemd" / "haven-agent@.service"
PLIST = ROOT / "packaging" / "launchd" / "org.haven.agent.plist"
PYTHON = "/opt/haven-agent/bin/python"  # where docs/deployment.md installs the agent


def _runs_the_service(argv: list[str]) -> Path:
    """`argv` is `PYTHON -m agent ...`: the agent's own parser must read it as `run`."""
    assert argv[:3] == [PYTHON, "-m", "agent"], argv
    args = build_parser().parse_args(argv[3:])
    assert args.handler is cmd_run and args.paths == [], argv
    return args.config


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_the_plist_parses_and_runs_the_agent_service():
    plist = plistlib.loads(PLIST.read_bytes())
    assert plist["Label"] == "org.haven.agent"
    config = _runs_the_service(plist["ProgramArguments"])
    assert str(config) == "/Users/USERNAME/Library/Application Support/Haven"
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] is True and plist["ThrottleInterval"] >= 60
    for key in ("StandardOutPath", "StandardErrorPath"):
        assert plist[key].startswith("/Users/USERNAME/Library/Logs/Haven/") and plist[key].endswith(".log")
    assert plist["Umask"] == 0o077


def test_the_systemd_unit_runs_the_agent_service_restarting_on_failure_and_hardened():
    unit = _unit()
    service = unit["Service"]
    config = _runs_the_service(shlex.split(service["ExecStart"]))
    assert str(config) == "/var/lib/haven-agent/%i" and service["StateDirectory"] == "haven-agent/%i"
    assert service["User"] == "%i" and service["Type"] == "simple"
    assert service["Restart"] == "on-failure"
    # A deauthorized agent (key wiped) or a second instance is not restarted.
    assert set(service["RestartPreventExitStatus"].split()) == {str(EXIT_DEAUTHORIZED), str(EXIT_LOCKED)}
    hardening = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "PrivateDevices": "yes",
                 "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
                 "RestrictSUIDSGID": "yes", "CapabilityBoundingSet": "", "UMask": "0077"}
    assert {key: service.get(key) for key in hardening} == hardening
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in unit["Unit"]["After"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_accepts_the_unit(tmp_path):
    """`systemd-analyze verify` checks every directive and that ExecStart's program exists: the
    copy points at this interpreter instead of the installed one, nothing else changes."""
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(PYTHON, sys.executable))
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "haven-agent@alice.service")],
                            capture_output=True, text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "haven-agent" in line]
    assert result.returncode == 0 and complaints == [], result.stdout + result.stderr


def test_a_misspelled_directive_would_be_caught(tmp_path):
    """The check above can fail: systemd names an unknown key (a typo is otherwise ignored)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here")
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(PYTHON, sys.executable).replace("NoNewPrivileges", "NoNewPrivilege"))
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "haven-agent@alice.service")],
                            capture_output=True, text=True, timeout=60)
    assert "Unknown key 'NoNewPrivilege'" in result.stderr
