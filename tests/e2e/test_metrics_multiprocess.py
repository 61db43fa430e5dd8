"""With PROMETHEUS_MULTIPROC_DIR, /metrics counts the requests of every gunicorn worker, not just
the one that answers the scrape (nothing two workers could disagree on lives in process memory)."""
import re

import httpx

from tests.e2e.conftest import LiveServer


def test_request_counts_are_summed_over_all_workers(haven_env, tmp_path):
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    server = LiveServer(env={**haven_env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
                        fault_dir=tmp_path, workers=3).start()
    try:
        for _ in range(40):
            with httpx.Client() as client:  # a new connection each time: spread over the workers
                assert client.get(f"{server.url}/healthz").status_code == 200
        body = httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()
    counted = re.search(r'^haven_http_requests_total\{method="GET",status="2xx"\} (\S+)$', body, re.M)
    assert counted, body[:2000]
    # 40 health checks plus the readiness probes the fixture made (the /login/ page)
    assert float(counted.group(1)) >= 40
    assert len(list(metrics_dir.glob("counter_*.db"))) >= 2, "more than one worker answered"
