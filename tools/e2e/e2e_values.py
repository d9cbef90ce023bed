"""The e2e job's values for the Secrets and the emulated Snowflake account it runs against.

    e2e_values.py VALUES_DIR ACCOUNT_DIR

VALUES_DIR gets one file per kestra-secrets key that a generated test value cannot stand in
for (ci_secrets.py fill reads them): a new RSA key pair's private key (encrypted PKCS#8 PEM)
and its passphrase, the user pipelines/dlt/snowflake/bootstrap.sql creates, an account
name, and a webhook inside the cluster (an alert never leaves it). ACCOUNT_DIR gets the
public key and bootstrap.sql with it filled in as the file's header says (the base64 lines
between BEGIN and END), for the emulator (tools/e2e/services.yaml). Both directories are
0700; nothing is printed. Main environment (.venv: cryptography comes with dlt's Snowflake
extra). The key is a throwaway: it only opens the job's emulator.
"""

from __future__ import annotations

import re
import secrets
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = ROOT / "pipelines" / "dlt" / "snowflake" / "bootstrap.sql"
PLACEHOLDER = "<RSA_PUBLIC_KEY>"
USER = re.compile(r"CREATE USER IF NOT EXISTS (\w+)")
ACCOUNT = "e2e-account"
# Nothing listens there: the flow's failure alert, if any, stays in the cluster.
WEBHOOK = "http://slack-webhook.chess-e2e.svc.cluster.local:8080/hook"


def write(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    values, account = (Path(a) for a in argv)
    for directory in (values, account):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
    sql = BOOTSTRAP.read_text()
    user = USER.search(sql)
    if PLACEHOLDER not in sql or user is None:
        print(f"error: {BOOTSTRAP} has no {PLACEHOLDER} or CREATE USER", file=sys.stderr)
        return 1
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    passphrase = secrets.token_urlsafe(24)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    write(values / "SNOWFLAKE_PRIVATE_KEY", private)
    write(values / "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE", passphrase)
    write(values / "SNOWFLAKE_USERNAME", user.group(1))
    write(values / "SNOWFLAKE_HOST", ACCOUNT)
    write(values / "SLACK_WEBHOOK_URL", WEBHOOK)
    body = "".join(line for line in public.splitlines() if "-----" not in line)
    write(account / "snowflake.pub", public)
    write(account / "bootstrap.sql", sql.replace(PLACEHOLDER, body))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
