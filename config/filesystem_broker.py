"""The embedded default's Celery broker: kombu's filesystem transport, with whole messages only.

kombu's filesystem `_put` creates the message file under its final name and then writes it, and a
consumer takes any file with that name, locked or not (a rename ignores `flock`): a consumer that
polls in between takes an empty message, and its `json.loads` error stops the Celery worker
("Unrecoverable error: JSONDecodeError") and with it `manage.py serve`. Here:

- a producer writes the message under a name no consumer takes (a leading dot) and renames it into
  place, atomic on one file system: a consumer sees a message whole or not at all; one producer's
  messages are taken in the order it sent them;
- a consumer takes a message by renaming it into the processed folder (same file system, so one
  consumer wins, where kombu copies it across to /tmp), reads it there and deletes it;
- a message file that still cannot be read (left by another writer, damaged on disk) is logged
  and kept in `<processed folder>/unreadable`, and the consumer goes on with the next message;
- a partial file a producer left behind (killed between its write and its rename) is deleted by
  a consumer once it is an hour old: no producer takes that long to write one message.

Selected by config/settings.py (CELERY_BROKER_TRANSPORT) whenever CELERY_BROKER_URL is filesystem://.
"""
import errno
import logging
import os
import time
import uuid
from queue import Empty

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
STALE_PARTIAL_SECONDS = 3600  # a producer writes a message in well under a second


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        # Consumers take names in sorted order: nanoseconds, fixed width, keep one producer's order
        # (kombu's milliseconds tie, and its ties go by random uuid).
        name = f"{time.monotonic_ns():020d}_{uuid.uuid4()}.{queue}.msg"
        partial = os.path.join(self.data_folder_out, f".{name}{PARTIAL_SUFFIX}")
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            _unlink_quietly(partial)
            raise ChannelError(f"Cannot add a message to {self.data_folder_out!r}: {exc}") from exc

    def _get(self, queue):
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:  # another queue's, or a message still being written
                if name.startswith(".") and name.endswith(PARTIAL_SUFFIX):
                    _remove_if_stale(os.path.join(self.data_folder_in, name))
                continue
            taken = os.path.join(self.processed_folder, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), taken)
            except FileNotFoundError:
                continue  # another consumer took it
            except OSError as exc:
                if exc.errno == errno.EXDEV:
                    raise ChannelError("The broker's processed_folder must be on the queue folder's file system") from exc
                raise ChannelError(f"Cannot take {name!r} from the queue: {exc}") from exc
            try:
                with open(taken, "rb") as f:
                    message = loads(bytes_to_str(f.read()))
            except (OSError, ValueError) as exc:
                self._set_aside(taken, name, exc)
                continue
            if not self.store_processed:
                _unlink_quietly(taken)
            return message
        raise Empty()

    def _set_aside(self, taken: str, name: str, exc: Exception) -> None:
        folder = os.path.join(self.processed_folder, "unreadable")
        os.makedirs(folder, exist_ok=True)
        try:
            os.replace(taken, os.path.join(folder, name))
        except OSError as kept:
            _unlink_quietly(taken)
            log.error("Broker: %s is not a readable message (%s); deleted, it could not be kept (%s)", name, exc, kept)
        else:
            log.error("Broker: %s is not a readable message (%s); kept in %s", name, exc, folder)


class Transport(filesystem.Transport):
    Channel = Channel


def _remove_if_stale(partial: str) -> None:
    try:
        age = time.time() - os.stat(partial).st_mtime
    except OSError:
        return  # renamed into place (or removed) meanwhile
    if age > STALE_PARTIAL_SECONDS:
        _unlink_quietly(partial)
        log.warning("Broker: deleted %s, a message its producer never finished (%.0f s old)", partial, age)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
