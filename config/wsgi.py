"""WSGI entry point (gunicorn config.wsgi)."""
import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()


def _warm_up() -> None:
    """Import every view now, not during a worker's first request (~2 s of CPU an agent waited
    for), then move what is loaded out of the collector's reach: a full collection walked every
    module object of the worker, tens of milliseconds several times a backup."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - imports the URLconf and every view module
    gc.collect()
    gc.freeze()


_warm_up()
