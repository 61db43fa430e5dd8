"""Debian's nginx in front of gunicorn, with deploy/nginx/haven.conf and a test CA, on loopback."""
import datetime
import ipaddress
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import REPO, free_port, wait_until

TEMPLATE = REPO / "deploy" / "nginx" / "haven.conf"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def test_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server-key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("Haven test CA")).issuer_name(_name("Haven test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def render(*, listen: str, cert: Path, key: Path, upstream_ports: list[int]) -> str:
    text = TEMPLATE.read_text()
    for name, value in {"listen": listen, "server_name": "127.0.0.1", "cert": str(cert), "key": str(key),
                        "upstreams": "\n    ".join(f"server 127.0.0.1:{port};" for port in upstream_ports)}.items():
        text = text.replace("{{" + name + "}}", value)
    assert "{{" not in text, "a placeholder of deploy/nginx/haven.conf was left unfilled"
    return text


@dataclass
class Nginx:
    directory: Path
    port: int
    ca: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def nginx_binary() -> str:
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if binary is None:
        raise RuntimeError("nginx is missing: make test installs it (apt-get install nginx)")
    return binary


def start_nginx(directory: Path, upstream_ports: list[int]) -> Nginx:
    directory.mkdir(parents=True, exist_ok=True)
    ca, cert, key = test_ca(directory)
    port = free_port()
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (directory / sub).mkdir(exist_ok=True)
    main = f"""
worker_processes 1;
user root;
pid {directory / 'nginx.pid'};
error_log {directory / 'logs' / 'error.log'} info;
events {{ worker_connections 256; }}
http {{
    access_log {directory / 'logs' / 'access.log'};
    client_body_temp_path {directory / 'body'};
    proxy_temp_path {directory / 'proxy'};
    fastcgi_temp_path {directory / 'fastcgi'};
    uwsgi_temp_path {directory / 'uwsgi'};
    scgi_temp_path {directory / 'scgi'};
    {render(listen=f'127.0.0.1:{port}', cert=cert, key=key, upstream_ports=upstream_ports)}
}}
"""
    config = directory / "nginx.conf"
    config.write_text(main)
    binary = nginx_binary()
    check = subprocess.run([binary, "-t", "-p", str(directory), "-c", str(config)], capture_output=True, text=True)
    if check.returncode != 0:
        raise AssertionError(f"nginx -t refused the configuration:\n{check.stderr}")
    server = Nginx(directory=directory, port=port, ca=ca)
    server.process = subprocess.Popen([binary, "-p", str(directory), "-c", str(config), "-g", "daemon off;"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import socket

    def listening():
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0
    wait_until(listening, timeout=20, what="nginx to listen")
    return server
