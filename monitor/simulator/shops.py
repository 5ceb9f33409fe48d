"""Shops on loopback for the probes: a TLS server, a plain-HTTP one, or one that accepts a
connection and never answers; and the demo's certificates.

Each server counts the connections it accepted (``accepts``), which is how tests prove that a
probe connected — or that it did not.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Mode = Literal["tls", "plain", "silent"]


class ShopServer:
    """One shop on 127.0.0.1: ``tls`` shakes hands with ``context`` (its certificate), then
    closes; ``plain`` answers every connection with a small HTTP response; ``silent`` accepts
    and says nothing until it is stopped (a probe then waits for its timeout)."""

    def __init__(
        self,
        mode: Mode = "tls",
        context: ssl.SSLContext | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "localhost",
    ) -> None:
        if mode == "tls" and context is None:
            raise ValueError("a TLS shop needs its server context (certificate and key)")
        self.mode = mode
        self.context = context
        self.name = name
        self.accepts = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sock = socket.create_server((host, port))
        self._sock.settimeout(0.2)
        self._port = int(self._sock.getsockname()[1])
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, name=f"shop {mode}", daemon=True)

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        scheme = "http" if self.mode == "plain" else "https"
        return f"{scheme}://{self.name}:{self.port}/"

    def start(self) -> ShopServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.close()
        self._sock.close()

    def __enter__(self) -> ShopServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepts += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        if self.mode == "silent":
            with self._lock:
                self._open.append(conn)
            return
        conn.settimeout(5)
        try:
            if self.mode == "plain":
                with contextlib.suppress(OSError):
                    conn.recv(1024)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                return
            assert self.context is not None
            with contextlib.suppress(OSError, ssl.SSLError):
                tls = self.context.wrap_socket(conn, server_side=True)
                with contextlib.suppress(OSError, ssl.SSLError):
                    tls.recv(1)  # until the client closes
                tls.close()
        finally:
            with contextlib.suppress(OSError):
                conn.close()


@dataclass(frozen=True)
class DemoCertificates:
    """A CA of the demo's own and a leaf for ``localhost`` signed by it (PEM files)."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    not_after: datetime

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def demo_certificates(directory: Path, *, days_left: float = 4.0) -> DemoCertificates:
    """A CA and a ``localhost`` certificate that expires in ``days_left`` days, written into
    ``directory`` (the demo's shop whose certificate is about to expire)."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Integration monitor demo CA"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Integration monitor demo CA"),
        ]
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = now + timedelta(days=days_left)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    found = DemoCertificates(
        directory / "demo-ca.pem",
        directory / "shop.pem",
        directory / "shop-key.pem",
        leaf.not_valid_after_utc,
    )
    found.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    found.cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    found.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    found.key_file.chmod(0o600)
    return found
