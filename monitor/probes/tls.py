"""The TLS prober: a handshake, and nothing after it.

Connects to an address the runner resolved and checked, sends the shop's host name (SNI),
verifies the chain against the trust store (the system's, or ``probes.ca_file``), the dates and
the host name, reads the leaf certificate, and closes: no HTTP request is ever sent. When
verification fails, a second handshake without verification reads the certificate anyway, so
an expired or untrusted certificate still tells its ``notAfter`` and issuer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from monitor.probes.lookup import IPAddress
from monitor.probes.results import Outcome, Result, verify_result
from monitor.probes.targets import Target

#: The longest an issuer name is kept (it comes from the shop's certificate).
ISSUER_CHARS = 100


def verifying_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """Chain, dates and host name verified; the system trust store, or ``ca_file`` instead."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def reading_context() -> ssl.SSLContext:
    """No verification at all: only to read the certificate of a handshake that failed it."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_READING = reading_context()


async def probe_tls(
    target: Target,
    addresses: Sequence[IPAddress],
    *,
    context: ssl.SSLContext,
    clock: Callable[[], datetime],
) -> Outcome:
    """One verified handshake with the first address that accepts a connection. The caller
    bounds the time (``asyncio.timeout``); a timeout raises out of here."""
    refused: OSError | None = None
    for address in addresses:
        try:
            der = await _handshake(address, target, context)
        except ssl.SSLCertVerificationError as exc:
            result = verify_result(exc.verify_code)
            certificate = await _read_certificate(address, target)
            return _outcome(result, clock(), certificate, exc.verify_message or exc.reason)
        except ssl.SSLError as exc:
            return Outcome(Result.TLS_ERROR, clock(), detail=_reason(exc))
        except ConnectionRefusedError as exc:
            refused = exc
            continue  # the next address may accept
        except (ConnectionResetError, asyncio.IncompleteReadError, EOFError) as exc:
            return Outcome(Result.TLS_ERROR, clock(), detail=type(exc).__name__)
        except OSError as exc:  # unreachable network or host
            refused = exc
            continue
        return _outcome(Result.OK, clock(), der, None)
    return Outcome(Result.REFUSED, clock(), detail=connect_failure(refused))


async def _handshake(address: IPAddress, target: Target, context: ssl.SSLContext) -> bytes | None:
    """Connect, shake hands, return the leaf certificate (DER), close."""
    _, writer = await asyncio.open_connection(
        str(address), target.port, ssl=context, server_hostname=target.host
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    finally:
        await close(writer)


async def _read_certificate(address: IPAddress, target: Target) -> bytes | None:
    """The leaf of a server whose certificate failed verification (None if even an
    unverified handshake fails)."""
    with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError, EOFError):
        return await _handshake(address, target, _READING)
    return None


async def close(writer: asyncio.StreamWriter) -> None:
    """Close politely, but never wait on a server that does not answer its close."""
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    writer.transport.abort()


def connect_failure(exc: OSError | None) -> str:
    """Why a connection could not be made, in a few words (never the address)."""
    if exc is None or isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return (os.strerror(exc.errno) if exc.errno else type(exc).__name__).lower()


def _outcome(result: Result, at: datetime, der: bytes | None, detail: str | None) -> Outcome:
    expires_at, issuer = certificate_facts(der)
    return Outcome(result, at, expires_at, issuer, detail)


def certificate_facts(der: bytes | None) -> tuple[datetime | None, str | None]:
    """The leaf's notAfter and its issuer (organisation, else common name, else the whole
    name), or Nones when there is no certificate or it cannot be parsed."""
    if not der:
        return None, None
    try:
        certificate = x509.load_der_x509_certificate(der)
        expires_at = certificate.not_valid_after_utc
        issuer = certificate.issuer
        names = issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME) or (
            issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
        )
        text = str(names[0].value) if names else issuer.rfc4514_string()
    except ValueError:
        return None, None
    return expires_at, _printable(text)[:ISSUER_CHARS] or None


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text).strip()


def _reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or type(exc).__name__).lower()[:80]
