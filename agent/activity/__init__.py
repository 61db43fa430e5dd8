"""File-activity monitoring (issue 13, docs/protocol.md "File activity (version 1)"): a watchdog
watcher over the backup selection, removable media and cloud-sync folders turns changes into
events with an exfiltration vector; an on-disk SQLite queue batches them and delivers each batch
exactly once."""
