"""Password input for management commands: HAVEN_PASSWORD, or a prompt on a terminal."""
import getpass
import os
import sys

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError


def password_from_env_or_prompt(email: str) -> str:
    password = os.environ.get("HAVEN_PASSWORD")
    if not password:
        if not sys.stdin.isatty():
            raise CommandError("Set HAVEN_PASSWORD or run on a terminal to be prompted for a password")
        password = getpass.getpass(f"Password for {email}: ")
        if password != getpass.getpass("Again: "):
            raise CommandError("The passwords do not match")
    try:
        validate_password(password)
    except ValidationError as error:
        raise CommandError("Password refused: " + " ".join(error.messages)) from None
    return password
