"""What leaves Haven for a SIEM: an alert or an event as a flat JSON record, and the same as a CEF
line (ArcSight Common Event Format 25). Specified in docs/siem-export.md."""
from activity.models import Alert, FileEvent

VENDOR, PRODUCT, VERSION = "Haven", "Haven", "1.0"
CEF_SEVERITY = {"low": 3, "medium": 5, "high": 8, "critical": 10}
SYSLOG_SEVERITY = {"low": 5, "medium": 4, "high": 3, "critical": 2}  # notice, warning, error, critical


def alert_record(alert: Alert) -> dict:
    detail = alert.detail or {}
    return {"type": "alert", "uuid": str(alert.uuid), "kind": alert.kind, "severity": alert.severity,
            "status": alert.status, "title": alert.title, "created_at": alert.created_at.isoformat(),
            "user": alert.subject_user.email if alert.subject_user else None,
            "device": alert.device.name if alert.device else None, "vector": detail.get("vector", ""),
            "file_count": detail.get("file_count", len(detail.get("files", []))),
            "files": detail.get("files", []), "detail": detail}


def event_record(event: FileEvent) -> dict:
    return {"type": "event", "event_id": str(event.event_id), "occurred_at": event.occurred_at.isoformat(),
            "user": event.user.email if event.user else None, "device": event.device.name if event.device else None,
            "event_type": event.event_type, "path": event.path, "dest_path": event.dest_path,
            "file_name": event.file_name, "size": event.size, "sha256": event.sha256, "category": event.category,
            "vector": event.vector, "process": event.process}


def _header(value) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _extension(value) -> str:
    return (str(value).replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n"))


def cef_line(record: dict) -> str:
    if record["type"] == "alert":
        first = (record["files"] or [{}])[0]
        signature, name, severity = record["kind"], record["title"], CEF_SEVERITY.get(record["severity"], 5)
        fields = {"externalId": record["uuid"], "rt": record["created_at"], "suser": record["user"],
                  "dhost": record["device"], "cs1Label": "vector", "cs1": record["vector"], "cnt": record["file_count"],
                  "fname": first.get("file_name"), "filePath": first.get("path"), "fsize": first.get("size"),
                  "fileHash": first.get("sha256"), "msg": record["title"]}
    else:
        signature, name, severity = f"file_{record['event_type']}", f"File {record['event_type']}", 1
        fields = {"externalId": record["event_id"], "rt": record["occurred_at"], "suser": record["user"],
                  "dhost": record["device"], "cs1Label": "vector", "cs1": record["vector"],
                  "fname": record["file_name"], "filePath": record["path"], "fsize": record["size"],
                  "fileHash": record["sha256"], "cat": record["category"]}
    extension = " ".join(f"{key}={_extension(value)}" for key, value in fields.items() if value not in (None, ""))
    return "|".join(["CEF:0", _header(VENDOR), _header(PRODUCT), _header(VERSION), _header(signature),
                     _header(name), str(severity), extension])


def syslog_severity(record: dict) -> int:
    return SYSLOG_SEVERITY.get(record.get("severity"), 6)  # events are informational
