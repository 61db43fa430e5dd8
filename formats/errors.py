"""Exceptions raised by the format decoders."""


class FormatError(ValueError):
    """Input does not follow docs/formats.md (malformed frame, pack, JSON...)."""


class IntegrityError(FormatError):
    """Authentication or verification failed: never use the data."""
