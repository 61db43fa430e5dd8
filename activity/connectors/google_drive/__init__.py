"""Google Drive activity, through the Admin SDK Reports API (`activities.list`, application
`drive`): pages newest first from `startTime` = the cursor, each activity's events mapped by
name. Credentials: an OAuth access token of an admin with the reports scope (`token`)."""
from datetime import UTC, datetime, timedelta

from activity.connectors.base import Connector, Page, PulledEvent, get_json

NAMES = {"create": "created", "upload": "created", "edit": "modified", "rename": "renamed", "move": "renamed",
         "delete": "deleted", "trash": "deleted", "download": "modified"}
HISTORY = timedelta(days=7)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class GoogleDriveConnector(Connector):
    kind = "google_drive"

    def pull(self, *, base_url, settings, credentials, cursor) -> Page:
        since = _time(cursor) if cursor else datetime.now(UTC) - HISTORY
        url = f"{base_url.rstrip('/')}/admin/reports/v1/activity/users/all/applications/drive"
        params = {"startTime": since.isoformat().replace("+00:00", "Z"), "maxResults": 1000}
        events, newest = [], since
        while True:
            _, body = get_json(url, token=credentials["token"], params=params)
            for activity in body.get("items", []):
                newest = max(newest, _time(activity["id"]["time"]))
                events += self._events(activity)
            if not body.get("nextPageToken"):
                break
            params = {**params, "pageToken": body["nextPageToken"]}
        # startTime is inclusive: the newest activity comes again next time and maps to the same ids.
        return Page(events=events, cursor=newest.isoformat(), more=False)

    @staticmethod
    def _events(activity: dict) -> list[PulledEvent]:
        found = []
        for index, event in enumerate(activity.get("events", [])):
            event_type = NAMES.get(event.get("name"))
            if event_type is None:
                continue
            values = {p["name"]: p.get("value", p.get("multiValue")) for p in event.get("parameters", [])}
            title = values.get("doc_title", "")
            found.append(PulledEvent(
                native_id=f"{activity['id']['time']}/{activity['id']['uniqueQualifier']}/{index}",
                occurred_at=_time(activity["id"]["time"]), user_email=activity.get("actor", {}).get("email", ""),
                event_type=event_type, path=f"drive://{values.get('doc_id', '')}/{title}", file_name=title or "?",
                process=f"drive:{event['name']}"))
        return found
