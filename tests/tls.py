"""A throwaway certificate for the test servers that speak HTTPS on loopback (Ceph RGW, the tampering
proxy): clients trust it through ``AWS_CA_BUNDLE``, as a station trusts a force's own CA."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class TlsFiles:
    certificate: Path
    """PEM certificate: what ``AWS_CA_BUNDLE`` names."""
    key: Path
    combined: Path
    """Certificate then key in one PEM: what RGW's ``ssl_certificate`` takes."""


def loopback_certificate(directory: Path, name: str = "loopback") -> TlsFiles:
    """A self-signed certificate for 127.0.0.1 and localhost, valid for a day, that is its own CA."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"evidence-pipeline test {name}")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    files = TlsFiles(
        certificate=directory / f"{name}-cert.pem",
        key=directory / f"{name}-key.pem",
        combined=directory / f"{name}.pem",
    )
    files.certificate.write_bytes(certificate_pem)
    files.key.write_bytes(key_pem)
    files.key.chmod(0o600)
    files.combined.write_bytes(certificate_pem + key_pem)
    files.combined.chmod(0o600)
    return files
