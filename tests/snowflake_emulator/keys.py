"""The account the tests set up with the project's bootstrap, and the key forms they log in with.

Used by tests/e2e/test_snowflake_*.py and tests/unit/test_snowflake_destination.py (main
environment: cryptography comes with dlt's Snowflake extra).
"""

from __future__ import annotations

import base64
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = ROOT / "pipelines" / "dlt" / "snowflake" / "bootstrap.sql"
PLACEHOLDER = "<RSA_PUBLIC_KEY>"
# The names bootstrap.sql creates (and the flow's variables use).
DATABASE, WAREHOUSE, ROLE, USER = "RAW", "LOADING_WH", "CHESS_LOADER", "CHESS_LOADER_SVC"
PASSPHRASE = "correct horse battery"


def bootstrap_sql(public_pem: str, *, drop: tuple[str, ...] = ()) -> str:
    """bootstrap.sql with the public key filled in as its header says (the base64 lines
    between BEGIN and END), minus the statements that start with any of `drop`."""
    body = "".join(line for line in public_pem.splitlines() if "-----" not in line)
    sql = BOOTSTRAP.read_text()
    assert PLACEHOLDER in sql
    sql = sql.replace(PLACEHOLDER, body)
    for start in drop:
        assert start in sql, start
        head, _, tail = sql.partition(start)
        sql = head + tail.split(";", 1)[1]
    return sql


@dataclass
class KeyPair:
    private_key: object  # cryptography RSAPrivateKey

    @classmethod
    def generate(cls) -> KeyPair:
        from cryptography.hazmat.primitives.asymmetric import rsa

        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @property
    def public_pem(self) -> str:
        from cryptography.hazmat.primitives import serialization as s

        public = self.private_key.public_key()  # type: ignore[attr-defined]
        return public.public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo).decode()

    @property
    def der(self) -> bytes:
        """Unencrypted PKCS#8 DER: what dlt hands the connector."""
        return self.encode("DER", "PKCS8", None)

    def encode(self, encoding: str, fmt: str, passphrase: str | None) -> bytes:
        from cryptography.hazmat.primitives import serialization as s

        encryption = (
            s.BestAvailableEncryption(passphrase.encode()) if passphrase else s.NoEncryption()
        )
        return self.private_key.private_bytes(  # type: ignore[attr-defined]
            getattr(s.Encoding, encoding), getattr(s.PrivateFormat, fmt), encryption
        )

    def form(self, name: str) -> tuple[str, str | None]:
        """The secret's value in one of FORMS, and the passphrase it needs."""
        pem = lambda fmt, p=None: self.encode("PEM", fmt, p).decode()  # noqa: E731
        if name == "pkcs8":  # openssl pkcs8 -topk8 -nocrypt (Snowflake's docs)
            return pem("PKCS8"), None
        if name == "pkcs8-encrypted":  # openssl pkcs8 -topk8 -v2 des3
            return pem("PKCS8", PASSPHRASE), PASSPHRASE
        if name == "rsa-traditional":  # BEGIN RSA PRIVATE KEY
            return pem("TraditionalOpenSSL"), None
        if name == "rsa-traditional-encrypted":  # Proc-Type: 4,ENCRYPTED + DEK-Info
            return pem("TraditionalOpenSSL", PASSPHRASE), PASSPHRASE
        if name == "literal-newlines":  # a PEM pasted into a one-line field
            return pem("PKCS8", PASSPHRASE).replace("\n", "\\n"), PASSPHRASE
        if name == "base64-wrapped-pem":  # `base64 rsa_key.p8`: lines of 76
            encoded = base64.b64encode(pem("PKCS8", PASSPHRASE).encode()).decode()
            return "\n".join(textwrap.wrap(encoded, 76)), PASSPHRASE
        if name == "base64-der":  # openssl ... -outform DER | base64 -w0
            return base64.b64encode(self.encode("DER", "PKCS8", PASSPHRASE)).decode(), PASSPHRASE
        raise ValueError(name)


FORMS = (
    "pkcs8",
    "pkcs8-encrypted",
    "rsa-traditional",
    "rsa-traditional-encrypted",
    "literal-newlines",
    "base64-wrapped-pem",
    "base64-der",
)
