"""The relay's QUIC certificate: self-signed, generated once and kept in the data folder.

Clients do not check it against a CA: they pin its SHA-256 fingerprint (of the DER encoding),
which they learn from ``GET /v1/calls/relay`` over the main, authenticated API. Every node of a
deployment that shares one data folder (or a copy of ``relay/``) presents the same certificate.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_VALIDITY = datetime.timedelta(days=3650)


@dataclass(frozen=True, slots=True)
class RelayCertificate:
    cert_path: Path
    key_path: Path
    fingerprint: str  # hex SHA-256 of the DER certificate


def fingerprint_of(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def load_or_create(folder: Path) -> RelayCertificate:
    """The certificate in ``folder`` (``cert.pem``, ``key.pem``), made first if missing."""
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    if not (cert_path.exists() and key_path.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        _create(cert_path, key_path)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    der = cert.public_bytes(serialization.Encoding.DER)
    return RelayCertificate(cert_path, key_path, fingerprint_of(der))


def _create(cert_path: Path, key_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "doorless relay")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + _VALIDITY)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Written under temporary names and renamed, key first: a crash leaves no half pair.
    for path, data, mode in (
        (key_path, key_pem, 0o600),
        (cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644),
    ):
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)


__all__ = ["RelayCertificate", "fingerprint_of", "load_or_create"]
