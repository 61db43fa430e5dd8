"""Model fields of the archives app."""
from django.core.validators import RegexValidator
from django.db import models

PATH_ID_HEX = RegexValidator(r"^[0-9a-f]{64}$", "a path id is 64 lowercase hexadecimal characters")


class PathIdField(models.BinaryField):
    """A keyed path id (docs/formats.md §4): 64 lowercase hex characters in Python — in the API,
    in lookups, in every caller — and its 32 raw bytes in the database. Hex text cost 32 bytes
    more per version row and as much again in the (archive, path_id, committed_at) index: on a
    first backup of many small files, one of the larger shares of the database."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", 32)
        super().__init__(*args, **kwargs)
        # BinaryField's MaxLengthValidator(32) would measure the 64-character hex form.
        self.validators[:] = [PATH_ID_HEX]

    def value_to_string(self, obj):
        """Serialization (dumpdata) writes the hex form, as Python sees it."""
        return self.value_from_object(obj)

    def from_db_value(self, value, expression, connection):
        return None if value is None else bytes(value).hex()

    def to_python(self, value):
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value).hex()
        return value

    def get_prep_value(self, value):
        if value is None or isinstance(value, (bytes, bytearray, memoryview)):
            return value
        raw = bytes.fromhex(value)  # a ValueError for anything but hex: callers validate path ids first
        if len(raw) != 32:
            raise ValueError("a path id is 32 bytes (64 hex characters)")
        return raw
