"""File-activity events, detection rules and alerts arrive with the file-activity issue."""
