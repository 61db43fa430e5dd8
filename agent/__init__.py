"""The Haven endpoint agent. Plain Python: it imports formats/ and nothing of the server."""
__version__ = "0.1.0"
