"""A throwaway certificate authority for loopback TLS: the demo's and the tests' server.

``edgeloop demo`` runs its fleet server over TLS with a CA made here and provisions its agents
with that CA (they trust it alone). A real fleet uses its organisation's CA; the server only
needs ``--tls-cert`` and ``--tls-key``, and ``edgeloop fleet provision --ca`` pins the CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgeloop._io import atomic_write_bytes

__all__ = ["LocalCA", "make_local_ca"]


@dataclass(frozen=True)
class LocalCA:
    ca_pem: Path
    cert_pem: Path
    key_pem: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_local_ca(directory: Path, name: str = "edgeloop local CA") -> LocalCA:
    """A CA, and a server certificate it signed for 127.0.0.1 and localhost, as PEM files.

    The key files are 0600. Valid two days (the certificate one): for a demo or a test.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
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
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
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
    out = LocalCA(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    atomic_write_bytes(out.ca_pem, ca.public_bytes(serialization.Encoding.PEM), mode=0o644)
    atomic_write_bytes(out.cert_pem, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    pkcs8 = serialization.PrivateFormat.PKCS8
    raw = key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())
    atomic_write_bytes(out.key_pem, raw, mode=0o600)
    return out
