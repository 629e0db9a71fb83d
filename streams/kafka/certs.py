"""A throwaway certificate authority for the secured local broker and the tests.

`pfilter kafka up --secure` needs TLS on its SASL_SSL listener: a CA and a
broker certificate, generated into the state dir with `cryptography` (no
keytool, no openssl CLI): PEM for the clients and the broker's truststore, a
PKCS#12 keystore for the broker.

These keys protect a loopback test broker only: they are unencrypted on disk
(mode 0600) and valid for a year. Production brokers bring their own.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: A year: outlives any test session or demo; short enough to be obviously throwaway.
VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class CertFiles:
    ca_cert: Path
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pfilter local"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _load_ca(ca_cert: Path, ca_key: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def ensure_ca(directory: Path) -> tuple[Path, Path]:
    """The CA's (cert, key) in ``directory``, created on first use."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("pfilter local CA")).issuer_name(_name("pfilter local CA"))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def issue(directory: Path, name: str, *, hosts: list[str], server: bool, client: bool = False,
          keystore_password: bytes | None = None) -> CertFiles:
    """A certificate for ``name`` signed by the CA in ``directory`` (created if needed).

    ``hosts``: DNS names and IP addresses it is valid for (hostname
    verification checks them). ``server``: serverAuth; ``client``: clientAuth
    (mTLS; a client-only certificate when ``server`` is false). With
    ``keystore_password`` a PKCS#12 keystore ``<name>.p12`` (key, certificate,
    CA) is written too, for a JVM: Kafka's PEM keystore needs an encrypted
    PKCS#8 key, and Java 17 cannot decrypt the PBES2 encryption that is all
    `cryptography` writes for PKCS#8 (it reads PBES2 in PKCS#12).
    """
    ca_cert_path, ca_key_path = ensure_ca(directory)
    ca_cert, ca_key = _load_ca(ca_cert_path, ca_key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    usages = [u for u, on in ((ExtendedKeyUsageOID.SERVER_AUTH, server),
                              (ExtendedKeyUsageOID.CLIENT_AUTH, client or not server)) if on]
    builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if keystore_password is not None:
        data = pkcs12.serialize_key_and_certificates(
            name.encode(), key, cert, [ca_cert], serialization.BestAvailableEncryption(keystore_password))
        fd = os.open(directory / f"{name}.p12", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    return CertFiles(ca_cert=ca_cert_path, cert=cert_path, key=key_path)
