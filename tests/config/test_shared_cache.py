"""Django's cache is one every process shares (docs/operations.md, "What is shared between processes"):
Redis when HAVEN_CACHE_URL names one, else the database cache — never a per-process LocMemCache."""
import os
import secrets
import subprocess

from django.conf import settings

from tests.support import PYTHON, REPO

_SETUP = "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup(); "


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-c", _SETUP + code], cwd=REPO, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=120)


def test_the_default_cache_is_the_database_and_sessions_are_rows():
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"
    assert settings.SESSION_ENGINE == "django.contrib.sessions.backends.db"


def test_with_haven_cache_url_two_processes_share_one_redis_cache():
    url = os.environ["CELERY_BROKER_URL"]  # the test's own Redis database
    assert url.startswith("redis://")
    key, value = f"shared-{secrets.token_hex(4)}", secrets.token_hex(8)
    wrote = _python(f"from django.core.cache import cache; cache.set({key!r}, {value!r}, 60); "
                    "from django.core.cache import caches; print(type(caches['default']).__name__)", HAVEN_CACHE_URL=url)
    assert wrote.returncode == 0, wrote.stderr
    assert wrote.stdout.strip() == "RedisCache"
    read = _python(f"from django.core.cache import cache; print(cache.get({key!r})); cache.delete({key!r})",
                   HAVEN_CACHE_URL=url)
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == value  # another process, same answer


def test_a_cache_url_that_is_not_redis_is_refused():
    result = _python("pass", HAVEN_CACHE_URL="memcached://127.0.0.1:11211")
    assert result.returncode != 0 and "HAVEN_CACHE_URL must be redis://" in result.stderr
