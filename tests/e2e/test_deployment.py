"""Mass deployment for real: 20 silent enrollments in a loop with one deployment token, each
through the agent's own CLI (a process, as an MDM script runs it) against gunicorn and OpenBao.
An exhausted and an expired token are refused with a clear error, and nothing is created."""
import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from accounts.deployment import deployment_token_create
from accounts.domains import verified_domains_change
from accounts.models import AuditEvent, DeploymentToken, Device, DeviceToken, Group, User
from agent.config import CONFIG_FILE, config_load
from agent.keys import user_key_load
from formats.keys import key_id_for
from keystore.models import UserKey
from tests.support import PYTHON, REPO

pytestmark = pytest.mark.slow

DEVICES = 20


def _enroll(config: Path, server, email: str, token: str, *, via_env: bool = False) -> subprocess.CompletedProcess:
    """No password, no terminal: what a deployment script runs (the token from the environment
    keeps it out of process listings; the flag works too)."""
    env = {key: value for key, value in os.environ.items() if key not in ("HAVEN_PASSWORD", "HAVEN_DEPLOYMENT_TOKEN")}
    args = ["enroll", "--server", server.url, "--user-email", email, "--device-name", config.name]
    if via_env:
        env["HAVEN_DEPLOYMENT_TOKEN"] = token
    else:
        args += ["--deployment-token", token]
    return subprocess.run([PYTHON, "-m", "agent", "--config", str(config), *args], cwd=REPO, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def test_twenty_devices_enroll_silently_with_one_token_and_dead_tokens_create_nothing(
        live_servers, alice, org_a, tmp_path):
    server = live_servers(workers=2)
    verified_domains_change(organization=org_a, add=["a.example"], remove=[], actor_label="test")
    group = Group.objects.create(organization=org_a, name="Fleet")
    token, raw = deployment_token_create(organization=org_a, max_uses=DEVICES, group=group, create_users=True,
                                         allow_existing_keys=True, label="rollout", actor=alice)
    # 19 new people, each a first device (key generated and escrowed), and a replacement
    # computer for the first of them (it receives the escrowed key).
    emails = [f"employee{index:02}@a.example" for index in range(DEVICES - 1)] + ["employee00@a.example"]
    configs = []
    for index, email in enumerate(emails):
        config = tmp_path / f"device-{index:02}"
        result = _enroll(config, server, email, raw, via_env=index % 2 == 0)
        assert result.returncode == 0, f"device {index}: {result.stdout}\n{result.stderr}"
        configs.append(config)
    assert "received your escrowed key" in result.stdout  # the last one, the replacement computer

    token.refresh_from_db()
    assert token.use_count == DEVICES and token.state == "exhausted"
    assert Device.objects.filter(organization=org_a).count() == DEVICES
    assert AuditEvent.objects.filter(action="deployment_token.use").count() == DEVICES
    people = User.objects.filter(email__in=emails)
    assert people.count() == DEVICES - 1 and set(group.members.all()) == set(people)
    for config, email in zip(configs, emails, strict=True):
        saved = config_load(config)
        assert saved.user_email == email and saved.token.startswith("hvd_")
        key = user_key_load(config)  # the agent can back up: its key's escrow is confirmed
        assert UserKey.objects.get(user__email=email, state=UserKey.State.ESCROWED).key_id == key_id_for(key)
    assert user_key_load(configs[0]) == user_key_load(configs[-1])

    # The 21st use: exhausted. A clear error, exit 2, and no user, device or use.
    before = (User.objects.count(), Device.objects.count(), DeviceToken.objects.count())
    refused = _enroll(tmp_path / "one-too-many", server, "late.hire@a.example", raw)
    assert refused.returncode == 2 and "deployment_token_exhausted" in refused.stderr, refused.stderr
    assert not (tmp_path / "one-too-many" / CONFIG_FILE).exists()

    expired, expired_raw = deployment_token_create(organization=org_a, create_users=True, actor=alice)
    DeploymentToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    late = _enroll(tmp_path / "expired", server, "late.hire@a.example", expired_raw, via_env=True)
    assert late.returncode == 2 and "deployment token has expired" in late.stderr, late.stderr
    assert "deployment_token_expired" in late.stderr

    assert (User.objects.count(), Device.objects.count(), DeviceToken.objects.count()) == before
    assert not User.objects.filter(email="late.hire@a.example").exists()
    assert DeploymentToken.objects.get(pk=token.pk).use_count == DEVICES
    assert DeploymentToken.objects.get(pk=expired.pk).use_count == 0
    assert AuditEvent.objects.filter(action="deployment_token.refused").count() == 2
