"""``--web.config.file``: TLS and basic auth for the HTTP endpoints, in the Prometheus
exporter-toolkit format, so existing Prometheus setups drop it in unchanged.

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # optional
      client_ca_file: ca.crt                         # needed to verify client certificates
      min_version: TLS12                             # TLS12 (default) or TLS13
    basic_auth_users:
      prometheus: $2y$10$...                         # bcrypt hashes (htpasswd -nBC 10 "")
    http_server_config:
      headers: {X-Frame-Options: deny}

Everything but ``/healthz`` requires the credentials when ``basic_auth_users`` is set.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import bcrypt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from monitor.config_errors import ConfigError, describe, yaml_problem
from monitor.exporter.badges import PUBLIC_PREFIX

#: Probes: they say only "alive" / "ready", and Kubernetes probes cannot send credentials.
#: Besides them only the keyed badges under PUBLIC_PREFIX (a badge each, nothing else).
UNPROTECTED = frozenset({"/healthz", "/readyz"})
ClientAuth = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
_TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_VERIFY_MODES = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class TLSServerConfig(_Strict):
    cert_file: Path
    key_file: Path
    client_auth_type: ClientAuth = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: Literal["TLS12", "TLS13"] = "TLS12"
    max_version: Literal["TLS12", "TLS13"] | None = None


class HTTPServerConfig(_Strict):
    headers: dict[str, str] = Field(default_factory=dict)


class WebConfigFile(_Strict):
    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = Field(default_factory=HTTPServerConfig)
    basic_auth_users: dict[str, str] = Field(default_factory=dict)


@dataclass
class WebConfig:
    """What the HTTP server needs: an SSL context, the users, extra headers."""

    ssl_context: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def load_web_config(path: Path) -> WebConfig:
    """Read and check the file, certificates included; raises ConfigError with the reason."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        # never PyYAML's own text: it quotes the line, and this file holds password hashes
        raise ConfigError("cannot read web config " + yaml_problem(str(path), exc)) from None
    try:
        parsed = WebConfigFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"web config {path}: " + describe(exc, source=str(path))) from None
    for user, hashed in parsed.basic_auth_users.items():
        if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ConfigError(f"web config {path}: basic_auth_users.{user} is not a bcrypt hash")
    context = _ssl_context(parsed.tls_server_config, path.parent, path)
    return WebConfig(
        ssl_context=context,
        users={user: hashed.encode() for user, hashed in parsed.basic_auth_users.items()},
        headers=parsed.http_server_config.headers,
    )


def _ssl_context(tls: TLSServerConfig | None, base: Path, path: Path) -> ssl.SSLContext | None:
    if tls is None:
        return None

    def resolve(file: Path) -> Path:
        return file if file.is_absolute() else base / file  # relative to the web config file

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _TLS_VERSIONS[tls.min_version]
    if tls.max_version is not None:
        context.maximum_version = _TLS_VERSIONS[tls.max_version]
    cert, key = resolve(tls.cert_file), resolve(tls.key_file)
    named = {"cert_file": cert, "key_file": key}
    if tls.client_ca_file is not None:
        named["client_ca_file"] = resolve(tls.client_ca_file)
    for name, file in named.items():  # ssl's own error names no file: say which one
        try:
            file.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"web config {path}: tls_server_config.{name} {file}: {exc.strerror}"
            ) from None
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"web config {path}: tls_server_config.cert_file {cert} and key_file {key} "
            f"are not a certificate and its private key in PEM ({_ssl_reason(exc)})"
        ) from None
    if "client_ca_file" in named:
        try:
            context.load_verify_locations(named["client_ca_file"])
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"web config {path}: tls_server_config.client_ca_file "
                f"{named['client_ca_file']} holds no CA certificate in PEM ({_ssl_reason(exc)})"
            ) from None
    needs_ca = tls.client_auth_type in ("RequireAndVerifyClientCert", "VerifyClientCertIfGiven")
    if needs_ca and tls.client_ca_file is None:
        raise ConfigError(
            f"web config {path}: client_auth_type {tls.client_auth_type} needs client_ca_file"
        )
    context.verify_mode = _VERIFY_MODES[tls.client_auth_type]
    return context


def _ssl_reason(exc: OSError | ssl.SSLError) -> str:
    """OpenSSL's short reason (``KEY_VALUES_MISMATCH``, ``NO_START_LINE``), not its prose."""
    return str(getattr(exc, "reason", None) or exc.strerror or type(exc).__name__)


StartResponse = Callable[..., Any]
App = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def protect(app: App, config: WebConfig) -> App:
    """Wrap the WSGI app with basic auth (except the probes) and the configured headers."""
    verified: set[tuple[str, bytes]] = set()  # bcrypt is slow on purpose: remember successes
    lock = threading.Lock()

    def allowed(header: str) -> str | None:
        """The user a basic auth header lets in, or None."""
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        hashed = config.users.get(user)
        if hashed is None:
            bcrypt.checkpw(b"timing", _DUMMY_HASH)  # same cost for unknown users
            return None
        key = (user, hashlib.sha256(password.encode() + hashed).digest())
        with lock:
            if key in verified:
                return user
        if not bcrypt.checkpw(password.encode(), hashed):
            return None
        with lock:
            verified.add(key)
        return user

    def wrapped(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        def with_headers(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            return start_response(status, headers + list(config.headers.items()), *args)

        path = environ.get("PATH_INFO", "/")
        environ.pop("REMOTE_USER", None)  # only basic auth says who is asking
        protected = config.users and path not in UNPROTECTED and not path.startswith(PUBLIC_PREFIX)
        user = allowed(environ.get("HTTP_AUTHORIZATION", "")) if protected else None
        if user is not None:
            environ["REMOTE_USER"] = user
        if protected and user is None:
            body = b"unauthorized\n"
            with_headers(
                "401 Unauthorized",
                [
                    ("WWW-Authenticate", 'Basic realm="integration-monitor"'),
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                ],
            )
            return [body]
        return app(environ, with_headers)

    return wrapped


#: bcrypt("timing", cost 10): checked for unknown users so they cost as much as known ones.
_DUMMY_HASH = b"$2b$10$RDim0hGLlxjtXHjI0AqmGegzqcTDVoRymJdgsKurpw0uoQHkf4Epi"
