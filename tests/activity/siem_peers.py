"""Real peers for the export tests: a syslog collector (TCP, or TLS with a test CA made with
`cryptography`) that parses octet-counted RFC 5424 frames, and a webhook receiver that checks the
HMAC signature as a customer's would."""
import datetime
import http.server
import ipaddress
import socketserver
import ssl
import threading
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from activity.export.webhook import signature_valid


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_test_ca(tmp_path) -> tuple[str, str, str]:
    """(CA PEM, server cert file, server key file) for 127.0.0.1 / localhost."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("Haven test SIEM CA")).issuer_name(_name("Haven test SIEM CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca.public_bytes(serialization.Encoding.PEM).decode(), str(cert_file), str(key_file)


def read_frames(stream) -> list[bytes]:
    """Octet-counted frames (`LEN SP MSG`) until the peer closes."""
    frames, buffer = [], b""
    while True:
        chunk = stream.recv(65536)
        if not chunk:
            return frames
        buffer += chunk
        while b" " in buffer:
            length, rest = buffer.split(b" ", 1)
            if len(rest) < int(length):
                break
            frames.append(rest[:int(length)])
            buffer = rest[int(length):]


@dataclass
class SyslogCollector:
    port: int
    messages: list = field(default_factory=list)
    server: socketserver.ThreadingTCPServer | None = None

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def syslog_collector(*, context: ssl.SSLContext | None = None) -> SyslogCollector:
    collector = SyslogCollector(port=0)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            stream = self.request
            if context is not None:
                try:
                    stream = context.wrap_socket(stream, server_side=True)
                except ssl.SSLError:
                    return
            collector.messages.extend(frame.decode() for frame in read_frames(stream))

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    collector.server, collector.port = server, server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return collector


@dataclass
class WebhookReceiver:
    port: int
    secret: bytes = b""
    status: int = 200
    received: list = field(default_factory=list)  # (headers, body, signature valid)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def webhook_receiver() -> WebhookReceiver:
    receiver = WebhookReceiver(port=0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            valid = signature_valid(receiver.secret, self.headers.get("X-Haven-Signature", ""), body)
            receiver.received.append((dict(self.headers), body, valid))
            self.send_response(receiver.status if valid else 401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.server, receiver.port = server, server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver
