"""HTTP client of the agent API. TLS is verified (system CAs, or --ca-file for a private CA)."""
from dataclasses import dataclass

import httpx

from agent import __version__


class ApiError(Exception):
    """The server answered with an error; `code` is the machine-readable code it gave."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(f"{detail} (HTTP {status}, {code})")
        self.status = status
        self.code = code
        self.detail = detail


class DeviceDeauthorized(ApiError):
    """The server says this device was deauthorized: stop, and forget local secrets."""


@dataclass
class ApiClient:
    server: str
    token: str | None = None
    ca_file: str | None = None
    timeout: float = 60.0

    def __post_init__(self) -> None:
        verify = self.ca_file if self.ca_file else True
        headers = {"User-Agent": f"haven-agent/{__version__}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._http = httpx.Client(base_url=self.server.rstrip("/") + "/api/v1/", verify=verify,
                                  headers=headers, timeout=self.timeout)

    def close(self) -> None:
        self._http.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code < 400:
            return response
        try:
            body = response.json()
            code, detail = body.get("code", "error"), body.get("detail", response.text)
        except ValueError:
            code, detail = "error", response.text[:200] or response.reason_phrase
        error_class = DeviceDeauthorized if code == "device_deauthorized" else ApiError
        raise error_class(response.status_code, code, detail)

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as error:
            raise ApiError(0, "unreachable", f"cannot reach {self.server}: {error}") from None
        return self._check(response)

    def enroll(self, *, email: str, password: str, device_name: str, os_name: str, device_id: str | None) -> dict:
        return self.request("POST", "enroll", json={
            "email": email, "password": password, "device_name": device_name, "os": os_name,
            "agent_version": __version__, "device_id": device_id,
        }).json()

    def device(self) -> dict:
        return self.request("GET", "device").json()
