"""Content Credentials for the tests: a test certificate authority and signer made on the fly
(nothing secret is committed), and videos signed with c2pa-python as a camera app or an AI
video tool would sign them."""

from __future__ import annotations

import datetime
import io
import struct
from dataclasses import dataclass
from functools import cache
from typing import Any

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from model.credentials import C2PA_UUID

AI_GENERATED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
SIGNER_NAME = "Test Newsroom Signer"
ISSUER_ORGANISATION = "deepfake-serve tests"


@dataclass(frozen=True)
class SigningAuthority:
    """A root CA and an end-entity signing certificate it issued, both ES256."""

    ca_pem: str
    chain_pem: str  # the signer's certificate, then the CA's
    key: ec.EllipticCurvePrivateKey

    def sign(self, data: bytes, manifest: dict[str, Any], media_type: str = "video/mp4") -> bytes:
        """`data` with `manifest` embedded and signed."""
        signer = c2pa.Signer.from_callback(
            lambda payload: self.key.sign(payload, ec.ECDSA(hashes.SHA256())),
            c2pa.C2paSigningAlg.ES256,
            self.chain_pem,
            None,
        )
        signed = io.BytesIO()
        with signer, c2pa.Builder(manifest) as builder:
            builder.sign(signer, media_type, io.BytesIO(data), signed)
        return signed.getvalue()


@cache
def signing_authority() -> SigningAuthority:
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(
        _name("deepfake-serve test root"), _name("deepfake-serve test root"), ca_key, ca_key, now
    ).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    ca = ca.add_extension(_usage(sign_certificates=True), critical=True).sign(
        ca_key, hashes.SHA256()
    )
    leaf = (
        _certificate(_name(SIGNER_NAME), ca.subject, key, ca_key, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(sign_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_pem = ca.public_bytes(pem).decode()
    return SigningAuthority(ca_pem, leaf.public_bytes(pem).decode() + ca_pem, key)


def ai_video_manifest(title: str = "generated.mp4", extra: list | None = None) -> dict:
    """What an AI video tool would claim: created by a trained model."""
    created = {
        "action": "c2pa.created",
        "digitalSourceType": AI_GENERATED,
        "softwareAgent": {"name": "Example Video Generator 2.1"},
    }
    return {
        "claim_generator_info": [{"name": "example-generator", "version": "2.1"}],
        "title": title,
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [created]}}, *(extra or [])],
    }


def changed_after_signing(signed: bytes) -> bytes:
    """One byte of the media data flipped: the file still plays, its hash no longer matches."""
    changed = bytearray(signed)
    changed[len(changed) * 3 // 4] ^= 0xFF
    return bytes(changed)


def damaged_manifest(signed: bytes) -> bytes:
    """Bytes inside the Content Credentials box scrambled, its size kept (the video plays)."""
    start = signed.index(C2PA_UUID)
    damaged = bytearray(signed)
    for offset in range(start + 200, start + 264):
        damaged[offset] ^= 0x5A
    return bytes(damaged)


def oversized_manifest_box(data: bytes, size: int) -> bytes:
    """A Content Credentials box of `size` bytes appended after the rest of the file (so no
    offset in the file moves): what a hostile upload would carry to make a reader work."""
    return data + struct.pack(">I4s", size + 8, b"uuid") + C2PA_UUID + bytes(size - 16)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ISSUER_ORGANISATION),
        ]
    )


def _certificate(subject, issuer, key, issuer_key, now) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )


def _usage(sign_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not sign_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=sign_certificates,
        crl_sign=sign_certificates,
        encipher_only=False,
        decipher_only=False,
    )
