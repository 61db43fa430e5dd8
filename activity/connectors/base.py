"""The connector interface: a connector pulls one page of a cloud service's audit log from a
cursor and maps it to file events; the puller (activity/connectors/__init__.py) stores them."""
from dataclasses import dataclass
from datetime import datetime

import requests

TIMEOUT_SECONDS = 20


class RateLimited(Exception):
    """The service answered 429; try again after `retry_after` seconds."""

    def __init__(self, retry_after: float):
        super().__init__(f"rate limited; retry after {retry_after:.0f} s")
        self.retry_after = retry_after


class ServiceError(Exception):
    pass


@dataclass
class PulledEvent:
    native_id: str  # the service's id for the record: makes a second pull of it a no-op
    occurred_at: datetime
    user_email: str
    event_type: str  # created, modified, renamed, deleted (EventType)
    path: str
    file_name: str
    size: int | None = None
    dest_path: str = ""
    process: str = ""  # the service's own operation name, kept for the analyst


@dataclass
class Page:
    events: list[PulledEvent]
    cursor: str  # where the next pull starts
    more: bool  # another page is waiting now


class Connector:
    """One cloud service. `pull` is given the connector row, its opened credentials and cursor."""

    kind = ""

    def pull(self, *, base_url: str, settings: dict, credentials: dict, cursor: str) -> Page:
        raise NotImplementedError


def get_json(url: str, *, token: str, params: dict | None = None):
    response = requests.get(url, params=params, timeout=TIMEOUT_SECONDS, allow_redirects=False,
                            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    return checked(response)


def checked(response: requests.Response):
    if response.status_code == 429:
        try:
            retry_after = float(response.headers.get("Retry-After", "60"))
        except ValueError:
            retry_after = 60.0
        raise RateLimited(max(retry_after, 1.0))
    if response.status_code >= 400:
        raise ServiceError(f"{response.request.method} {response.url.split('?')[0]} answered "
                           f"HTTP {response.status_code}")
    try:
        return response, response.json()
    except ValueError:
        raise ServiceError("the service answered something other than JSON") from None
