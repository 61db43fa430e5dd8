"""Operations endpoints for load balancers and Prometheus (docs/operations.md).

`GET /healthz` — 200 when this web process reaches the database, 503 otherwise; `?deep=1` also
asks the keystore and the Celery broker. No authentication, no data.

`GET /metrics` — Prometheus text format. Values that several web processes could disagree on are
read from shared state at scrape time (database, broker, keystore); the per-request counters use
prometheus_client's multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set (the deploy/ units set
it), so every gunicorn worker's counts are summed. Access: a bearer token (HAVEN_METRICS_TOKEN),
or, without one, only a direct loopback connection that no proxy forwarded.
"""
import hmac
import os
import re
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Sum
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from accounts.models import Device
from archives.models import BackupRun, Pack
from keystore.models import KeystoreSnapshot
from keystore.vault import keystore_status

REQUESTS = Counter("haven_http_requests", "HTTP requests answered, by method and status class",
                   ["method", "status"])
INGEST_BYTES = Counter("haven_ingest_bytes", "Bytes of block batches accepted from agents")
_BLOCK_UPLOAD = re.compile(r"^/api/v1/archives/[^/]+/blocks$")
QUEUES = ("celery", "keys", "maintenance")


def request_metrics(get_response):
    """Middleware: count every answer, and the bytes of accepted block uploads."""
    def middleware(request):
        response = get_response(request)
        REQUESTS.labels(request.method, f"{response.status_code // 100}xx").inc()
        if request.method == "POST" and response.status_code == 201 and _BLOCK_UPLOAD.match(request.path):
            INGEST_BYTES.inc(int(request.META.get("CONTENT_LENGTH") or 0))
        return response
    return middleware


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - any failure means "not healthy"
        return False


def _broker_ok() -> bool:
    from config.celery_app import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
        return True
    except Exception:  # noqa: BLE001
        return False


@require_GET
def healthz(request):
    checks = {"database": _database_ok()}
    if request.GET.get("deep"):
        checks["keystore"] = keystore_status() == "unsealed"
        checks["broker"] = _broker_ok()
    healthy = all(checks.values())
    return JsonResponse({"status": "ok" if healthy else "unhealthy", "checks": checks},
                        status=200 if healthy else 503)


def _allowed(request) -> bool:
    token = settings.HAVEN_METRICS_TOKEN
    if token:
        supplied = request.META.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(supplied.encode(), token.encode())
    forwarded = any(name in request.META for name in ("HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP", "HTTP_FORWARDED"))
    return request.META.get("REMOTE_ADDR") in {"127.0.0.1", "::1"} and not forwarded


class SharedStateCollector:
    """Gauges read at scrape time from what every process shares."""

    def collect(self):
        since = timezone.now() - timedelta(hours=24)
        runs = GaugeMetricFamily("haven_backup_runs_24h", "Backup runs finished in the last 24 h, by status",
                                 labels=["status"])
        for status in BackupRun.Status.values:
            runs.add_metric([status], BackupRun.objects.filter(status=status, finished_at__gte=since).count())
        yield runs
        devices = GaugeMetricFamily("haven_devices", "Devices, by authorization", labels=["authorized"])
        for authorized in (True, False):
            devices.add_metric([str(authorized).lower()], Device.objects.filter(authorized=authorized).count())
        yield devices
        yield GaugeMetricFamily("haven_stored_bytes", "Bytes of packs indexed",
                                value=Pack.objects.aggregate(total=Sum("size"))["total"] or 0)
        state = keystore_status()
        keystore = GaugeMetricFamily("haven_keystore_state", "1 for the keystore's current state", labels=["state"])
        for name in ("unsealed", "sealed", "uninitialized", "unreachable"):
            keystore.add_metric([name], 1 if state == name else 0)
        yield keystore
        newest = KeystoreSnapshot.objects.filter(state=KeystoreSnapshot.State.SUCCEEDED).order_by("-taken_at").first()
        yield GaugeMetricFamily(
            "haven_keystore_snapshot_age_seconds",
            "Age of the newest good keystore snapshot (+Inf when there is none); alert above two intervals",
            value=(timezone.now() - newest.taken_at).total_seconds() if newest else float("inf"))
        depth = GaugeMetricFamily("haven_queue_depth", "Tasks waiting in the broker, by queue", labels=["queue"])
        for queue, count in _queue_depths().items():
            depth.add_metric([queue], count)
        yield depth


def _queue_depths() -> dict[str, int]:
    url = settings.CELERY_BROKER_URL
    if url.startswith("redis"):
        import redis

        client = redis.Redis.from_url(url, socket_timeout=3)
        try:
            return {queue: client.llen(queue) for queue in QUEUES}
        except redis.RedisError:
            return {}
    if url.startswith("filesystem"):
        folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]
        return {"all": sum(1 for name in os.listdir(folder) if name.endswith(".msg"))}
    return {}


@require_GET
def metrics(request):
    if not _allowed(request):
        return HttpResponse(status=404)
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(REQUESTS)
        registry.register(INGEST_BYTES)
    registry.register(SharedStateCollector())
    body = generate_latest(registry)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
