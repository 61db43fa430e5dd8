"""What does each FileEvent index cost ingestion? (issue 13; the figures are in docs/activity.md)

Takes the first 200,000 events `bench/events.py` stored (run it first: database
`haven_bench_events`), then for each index set given on the command line makes an empty copy of
the table with those indexes and COPYs the events into it in 5,000-event transactions, as
ingestion does; prints the PostgreSQL backend's CPU (utime + stime from /proc, so it must run on
the database's machine) and the wall time per event. An index set is names joined by "+":

    .venv/bin/python bench/events_indexes.py none pkey+event_id+org_time \\
        pkey+event_id+org_time+sha+user+device+name+vector+trgm \\
        pkey+event_id+org_time+sha_hash+user+device+name_hash+vector+trgm_plain
"""
import io
import os
import sys
import time
from pathlib import Path

import psycopg

INDEXES = {
    "pkey": "ALTER TABLE {t} ADD PRIMARY KEY (id)",
    "event_id": "CREATE UNIQUE INDEX ON {t} (event_id)",
    "org_time": "CREATE INDEX ON {t} (organization_id, occurred_at)",
    "brin_time": "CREATE INDEX ON {t} USING brin (occurred_at)",
    "sha": "CREATE INDEX ON {t} (organization_id, sha256) WHERE sha256 <> ''",
    "sha_hash": "CREATE INDEX ON {t} USING hash (sha256) WHERE sha256 <> ''",
    "user": "CREATE INDEX ON {t} (organization_id, user_id, occurred_at, id)",
    "device": "CREATE INDEX ON {t} (organization_id, device_id, occurred_at, id)",
    "name": "CREATE INDEX ON {t} (organization_id, file_name)",
    "name_hash": "CREATE INDEX ON {t} USING hash (file_name)",
    "vector": "CREATE INDEX ON {t} (organization_id, vector, occurred_at, id) WHERE vector <> ''",
    "trgm": "CREATE INDEX ON {t} USING gin (upper(path::text) gin_trgm_ops)",
    "trgm_plain": "CREATE INDEX ON {t} USING gin (path gin_trgm_ops)",
    "trgm_nofastupdate": "CREATE INDEX ON {t} USING gin (upper(path::text) gin_trgm_ops) WITH (fastupdate = off)",
    "trgm_gist": "CREATE INDEX ON {t} USING gist (upper(path::text) gist_trgm_ops)",
}
EVENTS, BATCH = 200_000, 5000


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/haven_bench_events")
    with psycopg.connect(url, autocommit=True) as connection:
        dump = io.BytesIO()
        with connection.cursor().copy(f"COPY (SELECT * FROM activity_fileevent ORDER BY id LIMIT {EVENTS}) "
                                      "TO STDOUT") as copy:
            for data in copy:
                dump.write(data)
    lines = dump.getvalue().split(b"\n")
    chunks = [b"\n".join(lines[i:i + BATCH]) + b"\n" for i in range(0, EVENTS, BATCH)]
    for spec in sys.argv[1:]:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("DROP TABLE IF EXISTS bench_index_cost")
            connection.execute("CREATE TABLE bench_index_cost (LIKE activity_fileevent INCLUDING DEFAULTS)")
            for name in spec.split("+"):
                if name != "none":
                    connection.execute(INDEXES[name].format(t="bench_index_cost"))
            pid = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
            cpu, began = cpu_seconds(pid), time.perf_counter()
            for chunk in chunks:
                with connection.transaction(), connection.cursor().copy("COPY bench_index_cost FROM STDIN") as copy:
                    copy.write(chunk)
            wall, cpu = time.perf_counter() - began, cpu_seconds(pid) - cpu
            print(f"{spec:75} wall {wall / EVENTS * 1e6:6.1f} µs/event  cpu {cpu / EVENTS * 1e6:6.1f} µs/event "
                  f"(load average {os.getloadavg()[0]:.1f})", flush=True)
            connection.execute("DROP TABLE bench_index_cost")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
