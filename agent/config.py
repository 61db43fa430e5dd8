"""The agent's configuration directory: server address, device identity and token.

Everything here is readable only by the agent's account (directory 0700, files 0600), written
atomically so a crash never leaves a half-written token.
"""
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

CONFIG_FILE = "agent.json"


class ConfigError(Exception):
    """The configuration directory is missing, unreadable or not enrolled."""


@dataclass
class AgentConfig:
    server: str
    device_id: str
    device_name: str
    archive_id: str
    user_id: str
    user_email: str
    organization_id: str
    token: str
    ca_file: str | None = None


def write_private_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically with mode 0600 (temporary file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def ensure_private_dir(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    return directory


def config_save(directory: Path, config: AgentConfig) -> None:
    ensure_private_dir(directory)
    write_private_file(directory / CONFIG_FILE, json.dumps(asdict(config), indent=2).encode())


def config_load(directory: Path) -> AgentConfig:
    path = directory / CONFIG_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{directory} holds no enrollment; run: python -m agent --config {directory} enroll ...") from None
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None
    try:
        return AgentConfig(**raw)
    except TypeError as error:
        raise ConfigError(f"{path} is not a Haven agent configuration: {error}") from None


def config_load_optional(directory: Path) -> AgentConfig | None:
    try:
        return config_load(directory)
    except ConfigError:
        return None
