from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "console"

    def ready(self) -> None:
        from console import mfa  # noqa: F401 - connects the sign-in receiver (two-factor state, audit)
