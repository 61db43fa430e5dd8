"""The backup policy pages: the organization's policy and the overrides per group and device, each
field's source, every field `manage.py policy` sets, errors on the form with nothing saved."""
import pytest
from django.test import Client

from accounts.models import AuditEvent, Group, Role
from accounts.services import device_create
from archives.policies import POLICY_FIELDS, policy_effective, policy_set
from archives.policy_models import BackupPolicy
from console.policy_forms import FIELDS
from tests.conftest import PASSWORD, _user


def _browser(user):
    client = Client()
    assert client.login(username=user.email, password=PASSWORD)
    return client


def _inheriting(**values) -> dict:
    """Form data where every field inherits except the ones given (as text, as a person types)."""
    data = {f"{name}__inherit": "on" for name in POLICY_FIELDS}
    for name, text in values.items():
        data.pop(f"{name}__inherit")
        data[name] = text
    return data


@pytest.fixture
def engineering(org_a, bob):
    group = Group.objects.create(organization=org_a, name="engineering")
    group.members.add(bob)
    return group


@pytest.fixture
def laptop(bob):
    return device_create(owner=bob, name="bob-laptop", os_name="Linux 6.1", agent_version="1.0")


def test_the_form_has_every_field_the_command_sets():
    assert tuple(FIELDS) == POLICY_FIELDS


def test_only_administrators_reach_the_pages(org_a, bob, engineering, laptop, mallory):
    analyst = _user(org_a, "sam@a.example", Role.SECURITY_ANALYST)
    for person in (bob, analyst):
        browser = _browser(person)
        assert browser.get("/policies/").status_code == 403
        assert browser.post("/policies/", _inheriting(nice="3")).status_code == 403
        assert browser.get(f"/policies/groups/{engineering.uuid}/").status_code == 404
    assert _browser(bob).get(f"/policies/devices/{laptop.uuid}/").status_code == 403  # his own device
    assert _browser(analyst).get(f"/policies/devices/{laptop.uuid}/").status_code == 403
    outsider = _browser(mallory)
    assert outsider.get(f"/policies/groups/{engineering.uuid}/").status_code == 404
    assert outsider.get(f"/policies/devices/{laptop.uuid}/").status_code == 404
    assert outsider.post(f"/policies/devices/{laptop.uuid}/", _inheriting(nice="3")).status_code == 404
    assert not BackupPolicy.objects.exists()


def test_an_administrator_sets_every_field_of_the_organizations_policy(alice, org_a, laptop):
    browser = _browser(alice)
    page = browser.get("/policies/")
    assert page.status_code == 200 and b"Haven&#x27;s default" in page.content
    response = browser.post("/policies/", _inheriting(
        include="~\n/srv/data", exclude="*.iso\n~/Downloads", default_excludes="no", vm_image_max_bytes="2G",
        interval_seconds="1h", allowed_hours="8-18", allowed_days="mon-fri", bandwidth_active="5M",
        bandwidth_away="0", cpu_threads="4", nice="15", version_interval_seconds="30m"))
    assert response.status_code == 302, response.content.decode()[:2000]
    row = BackupPolicy.objects.get(organization=org_a, group=None, device=None)
    assert (row.include, row.exclude, row.default_excludes, row.vm_image_max_bytes) == (
        ["~", "/srv/data"], ["*.iso", "~/Downloads"], False, 2 * 1024 ** 3)
    assert (row.interval_seconds, row.allowed_hours, row.allowed_days) == (3600, list(range(8, 19)), [0, 1, 2, 3, 4])
    assert (row.bandwidth_active, row.bandwidth_away, row.cpu_threads, row.nice, row.version_interval_seconds) == (
        5_000_000, 0, 4, 15, 1800)
    assert policy_effective(device=laptop)["exclude_effective"] == ["*.iso", "~/Downloads"]
    audit = AuditEvent.objects.get(action="policy.set")
    assert audit.actor == alice and audit.detail["changes"]["interval_seconds"] == 3600
    # the page shows the values back as typed, and saving again unchanged stores nothing new
    page = browser.get("/policies/").content.decode()
    assert 'value="mon-fri"' in page and 'value="1h"' in page and 'value="5M"' in page
    again = browser.post("/policies/", _inheriting(
        include="~\n/srv/data", exclude="*.iso\n~/Downloads", default_excludes="no", vm_image_max_bytes="2G",
        interval_seconds="60m", allowed_hours="8-18", allowed_days="mon-fri", bandwidth_active="5000k",
        bandwidth_away="0", cpu_threads="4", nice="15", version_interval_seconds="1800"), follow=True)
    assert b"Nothing changed." in again.content
    assert AuditEvent.objects.filter(action="policy.set").count() == 1


@pytest.mark.parametrize("field,text,message", [
    ("interval_seconds", "0", "between 1 second and 7 days"),
    ("interval_seconds", "soon", "Not a duration"),
    ("allowed_hours", "8-25", "not a range within 0-23"),
    ("allowed_days", "mon-funday", "Cannot read"),
    ("nice", "20", "between 0 and 19"),
    ("cpu_threads", "many", "whole number"),
    ("include", "relative/path", "each path starts with /"),
    ("include", "", "at least one path"),
    ("bandwidth_active", "fast", "Not a rate"),
    ("interval_seconds", "", "tick “inherit”"),
])
def test_bad_input_is_shown_on_the_form_and_nothing_is_saved(alice, org_a, field, text, message):
    policy_set(organization=org_a, changes={"nice": 5}, actor_label="test")
    response = _browser(alice).post("/policies/", _inheriting(bandwidth_away="1M", **{field: text}))
    assert response.status_code == 400
    page = response.content.decode()
    assert message in page and f'data-field="{field}"' in page
    row = BackupPolicy.objects.get(organization=org_a, group=None, device=None)
    assert (row.nice, row.bandwidth_away) == (5, None)  # the valid field of the same form was not saved either


def test_group_and_device_overrides_show_where_each_field_comes_from(alice, org_a, engineering, laptop):
    policy_set(organization=org_a, changes={"interval_seconds": 3600, "nice": 5}, actor_label="test")
    browser = _browser(alice)
    assert browser.post(f"/policies/groups/{engineering.uuid}/",
                        _inheriting(exclude="*.mp4", interval_seconds="10m")).status_code == 302
    assert browser.post(f"/policies/devices/{laptop.uuid}/", _inheriting(cpu_threads="1")).status_code == 302
    effective = policy_effective(device=laptop)
    assert (effective["interval_seconds"], effective["cpu_threads"], effective["nice"]) == (600, 1, 5)
    assert "*.mp4" in effective["exclude_effective"]
    page = browser.get(f"/policies/devices/{laptop.uuid}/").content.decode()
    table = page[page.index('class="compact effective"'):]

    def source(field):
        row = table[table.index(f'<tr data-field="{field}">'):]
        return row[row.index('class="source-') + len('class="source-'):].split('"')[0]

    assert source("cpu_threads") == "device"
    assert source("interval_seconds") == "group" and source("exclude") == "group"
    assert source("nice") == "organization"
    assert source("bandwidth_active") == "default"
    assert "group engineering" in table and "node_modules" in table  # the defaults folded in
    # the org page lists the overrides
    org_page = browser.get("/policies/").content.decode()
    assert f"/policies/devices/{laptop.uuid}/" in org_page and f"/policies/groups/{engineering.uuid}/" in org_page


def test_ticking_inherit_clears_one_field_and_remove_drops_the_override(alice, org_a, laptop):
    policy_set(organization=org_a, device=laptop, changes={"cpu_threads": 1, "nice": 19}, actor_label="test")
    browser = _browser(alice)
    assert browser.post(f"/policies/devices/{laptop.uuid}/", _inheriting(nice="19")).status_code == 302
    row = BackupPolicy.objects.get(device=laptop)
    assert (row.cpu_threads, row.nice) == (None, 19)
    assert browser.post(f"/policies/devices/{laptop.uuid}/", {"action": "reset"}).status_code == 302
    assert not BackupPolicy.objects.filter(device=laptop).exists()
    assert AuditEvent.objects.filter(action="policy.reset", target_uuid=laptop.uuid, actor=alice).exists()


def test_the_device_page_links_to_its_policy_for_administrators(alice, bob, laptop):
    assert f"/policies/devices/{laptop.uuid}/" in _browser(alice).get(f"/devices/{laptop.uuid}/").content.decode()
    assert f"/policies/devices/{laptop.uuid}/" not in _browser(bob).get(f"/devices/{laptop.uuid}/").content.decode()


def test_finding_a_device_on_the_organization_page(alice, laptop, mallory):
    device_create(owner=mallory, name="bob-laptop-lookalike", os_name="Linux", agent_version="1.0")
    page = _browser(alice).get("/policies/?device=bob-lap").content.decode()
    assert f"/policies/devices/{laptop.uuid}/" in page and "lookalike" not in page
