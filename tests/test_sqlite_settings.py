"""The embedded default's SQLite connection: WAL, and a WAL that does not keep its high-water mark."""
from tests.support import embedded_env, manage

PRAGMAS = ("from django.db import connection; c = connection.cursor(); "
           "print(*[c.execute(f'PRAGMA {p}').fetchone()[0] for p in ('journal_mode', 'synchronous', 'journal_size_limit')])")


def test_sqlite_connections_use_wal_and_bound_its_size(tmp_path):
    out = manage("shell", "-c", PRAGMAS, env=embedded_env(tmp_path / "var")).stdout.splitlines()[-1].split()
    assert out == ["wal", "1", str(4 * 1024 * 1024)]  # synchronous 1 = NORMAL
