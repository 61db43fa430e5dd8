"""The push restore stream (docs/formats.md §10): the test vectors, recomputed with bare
primitives, and the reader refusing tampered, reordered, truncated and extended streams."""
import io
import uuid

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from formats.push_stream import (
    PushEnd,
    PushFile,
    PushStreamWriter,
    StreamError,
    push_keypair_generate,
    push_stream_read,
)

AGENT = X25519PrivateKey.from_private_bytes(bytes(range(32)))
SERVER = X25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
JOB = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
A = "8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f"
E = "358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254"
SHARED = "9663aa1da97e848a914a436d04163dfbb89178f107f1b5b77ed3854203382854"
STREAM_KEY = "86097763714df6dab19b4f3e4029d3ddac432caa5607b4ce626dbe28cf790cf4"
HEADER = "4856505301" "00112233445566778899aabbccddeeff" + E + "00000020"
CHUNKS = [
    ("00", "00000030", "9c10b2be9b01ab5fbcf68ac74975e6dec89ff8ee24b45dbaa3f02fbe0027747556358d9bda7bca46dc8a259bdf90cc65"),
    ("00", "00000030", "300c29e1ee1048c826495b559be36ddaf6a3c7ac400c2ee0d2400ed8de9d5f01222606976688b87e4b5da826d46f7db9"),
    ("01", "00000014", "bee0e550b3de6ddc55e504b79d369eec01a01734"),
]
STREAM = bytes.fromhex(HEADER + "".join("".join(c) for c in CHUNKS))
FILE = PushFile(path="/home/alice/a.txt", size=11, mode=0o100644, mtime_ns=1700000000123456789)


def _raw(public) -> str:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def _write(agent_public: bytes, files: list[tuple[PushFile, bytes]], chunk_size: int = 32, server=SERVER,
           job=JOB) -> bytes:
    out = io.BytesIO()
    writer = PushStreamWriter(out.write, job_id=job, agent_public=agent_public, chunk_size=chunk_size,
                              _server_private=server)
    for entry, content in files:
        writer.file_begin(entry)
        writer.file_data(content)
    writer.close()
    return out.getvalue()


def _read(data: bytes, private=AGENT, job=JOB) -> list:
    return list(push_stream_read(io.BytesIO(data).read, job_id=job, private=private))


def test_it_writes_the_documented_vector():
    assert _raw(AGENT.public_key()) == A and _raw(SERVER.public_key()) == E
    assert _write(bytes.fromhex(A), [(FILE, b"hello haven")]) == STREAM


def test_it_reads_the_vector_and_matches_bare_primitives():
    assert _read(STREAM) == [FILE, b"hello haven", PushEnd(files=1, bytes=11)]
    # Independent recomputation: X25519 both ways, HKDF with the documented salt/info, GCM per chunk.
    shared = AGENT.exchange(SERVER.public_key())
    assert shared == SERVER.exchange(AGENT.public_key()) and shared.hex() == SHARED
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=JOB.bytes,
               info=b"haven/v1/push-stream" + JOB.bytes + bytes.fromhex(A) + bytes.fromhex(E)).derive(shared)
    assert key.hex() == STREAM_KEY
    header = bytes.fromhex(HEADER)
    plaintext = b""
    for index, (flags, length, sealed) in enumerate(CHUNKS):
        assert int(length, 16) == len(sealed) // 2
        nonce = bytes(4) + index.to_bytes(8, "big")
        plaintext += AESGCM(key).decrypt(nonce, bytes.fromhex(sealed), header + index.to_bytes(8, "big")
                                         + bytes.fromhex(flags))
    path = b"/home/alice/a.txt"
    assert plaintext == (b"\x01" + len(path).to_bytes(2, "big") + path + (11).to_bytes(8, "big")
                         + (0o100644).to_bytes(4, "big") + (1700000000123456789).to_bytes(8, "big") + b"hello haven"
                         + b"\x00" + (1).to_bytes(8, "big") + (11).to_bytes(8, "big"))


def test_a_round_trip_with_fresh_keys_and_many_chunks():
    private, public = push_keypair_generate()
    files = [(PushFile("/a/empty", 0, 0o100600, 1), b""), (PushFile("/a/\udce9t\u00e9", 5000, 0o100755, -5), b"x" * 5000),
             (PushFile("/a/c", 3, 0o100644, 7), b"abc")]
    data = _write(public, files, chunk_size=100, server=None)
    records = _read(data, private=private)
    assert records[0] == files[0][0] and records[1] == files[1][0]
    assert b"".join(r for r in records[2:-2] if isinstance(r, bytes)) == b"x" * 5000
    assert records[-1] == PushEnd(files=3, bytes=5003)


def _chunk_spans(data: bytes) -> list[tuple[int, int]]:
    spans, at = [], 57
    while at < len(data):
        length = int.from_bytes(data[at + 1:at + 5], "big")
        spans.append((at, at + 5 + length))
        at += 5 + length
    return spans


def _refused(data: bytes, **kwargs) -> str:
    with pytest.raises(StreamError) as refused:
        _read(data, **kwargs)
    return str(refused.value)


def test_a_changed_byte_anywhere_is_refused():
    for position in (10, 40, 57, 63, 100, len(STREAM) - 1):
        tampered = bytearray(STREAM)
        tampered[position] ^= 0x01
        _refused(bytes(tampered))


def test_truncation_at_any_point_is_refused():
    for cut in range(len(STREAM)):
        _refused(STREAM[:cut])


def test_dropping_reordering_or_repeating_chunks_is_refused():
    (a0, a1), (b0, b1), (c0, c1) = _chunk_spans(STREAM)
    head, first, second, last = STREAM[:a0], STREAM[a0:a1], STREAM[b0:b1], STREAM[c0:c1]
    assert "authentication" in _refused(head + second + first + last)
    assert "authentication" in _refused(head + first + last)
    assert "authentication" in _refused(head + first + first + second + last)
    # The final flag set on an earlier chunk, or cleared on the last: authentication fails.
    assert "authentication" in _refused(head + b"\x01" + first[1:])
    assert "authentication" in _refused(head + first + second + b"\x00" + last[1:])
    assert "ends early" in _refused(head + first + second)
    assert "follows the final chunk" in _refused(STREAM + b"\x00")


def test_another_jobs_or_keys_stream_is_refused():
    assert "another job" in _refused(STREAM, job=uuid.uuid4())
    other, _ = push_keypair_generate()
    assert "authentication" in _refused(STREAM, private=other)


def test_the_writer_keeps_to_the_declared_sizes():
    private, public = push_keypair_generate()
    writer = PushStreamWriter(io.BytesIO().write, job_id=JOB, agent_public=public)
    writer.file_begin(FILE)
    with pytest.raises(ValueError):
        writer.file_data(b"x" * 12)
    with pytest.raises(ValueError):
        writer.close()
