"""ApiClient.versions_at: every page at one point in time, in order, and the next page asked for
while the caller is still working through this one (agent/client.py)."""
import threading

import httpx
import pytest

from agent.client import ApiClient, ApiError

PAGES = 3
PER_PAGE = 4


def _client(handler) -> ApiClient:
    client = ApiClient("https://haven.test", token="t", retries=0, backoff=0)
    client._http = httpx.Client(base_url="https://haven.test/api/v1/", transport=httpx.MockTransport(handler))
    return client


class Server:
    """Pages 0..PAGES-1 of PER_PAGE versions; `after` is the page number as a string."""

    def __init__(self, fail_page: int | None = None):
        self.asked: list[dict] = []
        self.fail_page = fail_page
        self.page_asked = {n: threading.Event() for n in range(PAGES)}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        self.asked.append(params)
        number = int(params["after"])
        self.page_asked[number].set()
        if number == self.fail_page:
            return httpx.Response(500, json={"detail": "broken", "code": "error"})
        versions = [{"version_id": f"{number}-{i}"} for i in range(PER_PAGE)]
        return httpx.Response(200, json={"versions": versions, "next": str(number + 1) if number + 1 < PAGES else None})


def test_every_page_comes_in_order_at_one_point_in_time():
    server = Server()
    listed = [v["version_id"] for v in _client(server).versions_at("a", None)]
    assert listed == [f"{n}-{i}" for n in range(PAGES) for i in range(PER_PAGE)]
    assert [p["after"] for p in server.asked] == ["0", "1", "2"]
    assert len({p["at"] for p in server.asked}) == 1 and all(p["limit"] == "1000" for p in server.asked)


def test_the_next_page_is_asked_for_before_this_page_is_worked_through():
    server = Server()
    versions = _client(server).versions_at("a", "2026-12-01T00:00:00+00:00")
    next(versions)  # the caller holds the first version of page 0 and does not go on
    assert server.page_asked[1].wait(10), "page 1 was not asked for while page 0 was being worked through"
    assert not server.page_asked[2].is_set()  # one page ahead, not the whole listing
    assert len(list(versions)) == PAGES * PER_PAGE - 1


def test_a_caller_that_stops_early_leaves_nothing_running():
    server = Server()
    versions = _client(server).versions_at("a", None)
    next(versions)
    versions.close()  # the page asked for ahead is cancelled, or answered first; none after it
    assert [p["after"] for p in server.asked] in (["0"], ["0", "1"])
    assert not any(t.name.startswith("haven-versions") for t in threading.enumerate())


def test_a_failed_page_fails_the_listing_where_it_comes():
    server = Server(fail_page=1)
    versions = _client(server).versions_at("a", None)
    first_page = [next(versions) for _ in range(PER_PAGE)]
    assert [v["version_id"] for v in first_page] == [f"0-{i}" for i in range(PER_PAGE)]
    with pytest.raises(ApiError, match="broken"):
        next(versions)
