"""Microsoft 365 Unified Audit Log, through the Office 365 Management Activity API: list the
content blobs of `Audit.SharePoint` (SharePoint and OneDrive file operations) created since the
cursor, fetch each, map its file operations. Credentials: an Entra app's client id and secret
(client-credentials grant at `settings["token_url"]`)."""
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath

import requests

from activity.connectors.base import TIMEOUT_SECONDS, Connector, Page, PulledEvent, checked, get_json

OPERATIONS = {  # Management Activity API Operation → event type
    "FileUploaded": "created", "FileSyncUploadedFull": "created", "FileCopied": "created",
    "FileModified": "modified", "FileModifiedExtended": "modified",
    "FileRenamed": "renamed", "FileMoved": "renamed",
    "FileDeleted": "deleted", "FileRecycled": "deleted", "FileDeletedFirstStageRecycleBin": "deleted",
    "FileDownloaded": "modified", "FileSyncDownloadedFull": "modified", "FileAccessed": None,
}
# The API serves at most 7 days back, in windows of at most 24 hours.
WINDOW, HISTORY = timedelta(hours=24), timedelta(days=7)


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # the API writes UTC without a zone


class M365Connector(Connector):
    kind = "m365"

    def _token(self, settings: dict, credentials: dict) -> str:
        response = requests.post(settings["token_url"], timeout=TIMEOUT_SECONDS, data={
            "grant_type": "client_credentials", "client_id": credentials["client_id"],
            "client_secret": credentials["client_secret"], "scope": "https://manage.office.com/.default"})
        return checked(response)[1]["access_token"]

    def pull(self, *, base_url, settings, credentials, cursor) -> Page:
        now = datetime.now(UTC)
        start = max(_time(cursor) if cursor else now - HISTORY, now - HISTORY)
        end = min(start + WINDOW, now)
        token = self._token(settings, credentials)
        url = f"{base_url.rstrip('/')}/api/v1.0/{settings['tenant_id']}/activity/feed/subscriptions/content"
        params = {"contentType": "Audit.SharePoint", "startTime": start.strftime("%Y-%m-%dT%H:%M:%S"),
                  "endTime": end.strftime("%Y-%m-%dT%H:%M:%S")}
        events, newest = [], start
        while url:
            response, blobs = get_json(url, token=token, params=params)
            for blob in blobs:
                newest = max(newest, _time(blob["contentCreated"]))
                events += [e for e in map(self._event, get_json(blob["contentUri"], token=token)[1]) if e]
            url, params = response.headers.get("NextPageUri"), None
        # Next time from the end of this window (a blob listed twice maps to the same event ids).
        return Page(events=events, cursor=end.isoformat(), more=end < now - timedelta(minutes=1))

    @staticmethod
    def _event(record: dict) -> PulledEvent | None:
        event_type = OPERATIONS.get(record.get("Operation", ""))
        if event_type is None:
            return None
        path = f"{record.get('SourceRelativeUrl', '').rstrip('/')}/{record.get('SourceFileName', '')}"
        site = record.get("SiteUrl", "").rstrip("/")
        dest = ""
        if record.get("DestinationFileName"):
            dest = f"{site}/{record.get('DestinationRelativeUrl', '').rstrip('/')}/{record['DestinationFileName']}"
        return PulledEvent(native_id=record["Id"], occurred_at=_time(record["CreationTime"]),
                           user_email=record.get("UserId", ""), event_type=event_type,
                           path=f"{site}/{path.lstrip('/')}" if site else path,
                           file_name=record.get("DestinationFileName") or record.get("SourceFileName")
                           or PurePosixPath(path).name, dest_path=dest,
                           process=f"{record.get('Workload', 'M365')}:{record['Operation']}")
