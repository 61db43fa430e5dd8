"""Haven storage formats, version 1 (spec: docs/formats.md).

Pure library: no Django, no I/O beyond reading the file being chunked or a
pack file, so the agent and the server share exactly one implementation.
"""
