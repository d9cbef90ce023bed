"""Who may do what on the emulated account: the part of Snowflake's access control that the
project's bootstrap (pipelines/dlt/snowflake/bootstrap.sql) sets up and the pipeline's
preflight reads. fakesnow 0.12.1 has none of it: it answers CURRENT_ROLE() with DuckDB's
user, has no CURRENT_WAREHOUSE(), and rejects CREATE ROLE / CREATE USER / GRANT.

An administrator's session (run_on_fakesnow.py --admin) runs the bootstrap: its CREATE ROLE,
CREATE WAREHOUSE, CREATE USER, ALTER USER and GRANT statements land here, in DB_DIR/account.json
(CREATE DATABASE goes to fakesnow, which makes the database's file). Once that file exists
the emulator is strict, in both lanes:

* fakesnow creates no database or schema on connect: a database exists if CREATE DATABASE
  made it, a schema if someone ran CREATE SCHEMA (dlt does, for its dataset);
* a login names a user the bootstrap created, and
  - a TYPE = SERVICE user cannot log in with a password ("They cannot log in using a
    password", https://docs.snowflake.com/en/user-guide/admin-user-management#types-of-users);
  - a key-pair login must be signed by the private key of the user's RSA_PUBLIC_KEY
    (https://docs.snowflake.com/en/user-guide/key-pair-auth);
  - the role asked for (or the user's DEFAULT_ROLE) must be granted to the user, or the
    login fails (error 390189);
* the session's CURRENT_ROLE() is that role; CURRENT_WAREHOUSE() is the warehouse asked for
  (or DEFAULT_WAREHOUSE) only if it exists and the role has USAGE on it, else NULL: the
  connector does not check it at login (`validate_default_parameters` is off by default) and
  the session has no warehouse (snowflakedb/snowflake-jdbc#657); CURRENT_DATABASE() likewise
  needs the database to exist and USAGE on it;
* CREATE SCHEMA needs CREATE SCHEMA on the database (error 003001 otherwise, as reported in
  dbt-labs/dbt-external-tables#214).

Error codes and texts are Snowflake's as seen in public reports: 390100 "Incorrect username
or password was specified." (snowflakedb/spark-snowflake#116), 390144 "JWT token is invalid."
(PostHog/posthog#64603), 390189 "Role '…' specified in the connect string is not granted to
this user. …" (airbytehq/airbyte#23629, kulmam92/snowflake_flyway#2). What Snowflake says to a
service user's password is not documented: the emulator answers 390100.

Not modelled (passes as on a fakesnow without accounts): role hierarchies, privileges on
schemas, tables and stages (dlt's role owns what it creates), warehouse state and the
"No active warehouse" error of a query without one, network and authentication policies,
programmatic access tokens.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

try:
    from literals import read_literal
except ImportError:  # imported as tests.snowflake_emulator.account
    from .literals import read_literal

ACCOUNT_FILE = "account.json"
IDENT = r'(?:"[^"]+"|[A-Za-z_][\w$]*)'
STATEMENT = re.compile(r"^\s*(?P<verb>CREATE|ALTER|GRANT|USE)\b", re.I)
CREATE = re.compile(
    rf"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?P<kind>ROLE|WAREHOUSE|USER)\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    rf"(?P<name>{IDENT})(?P<props>.*)$",
    re.I | re.S,
)
ALTER_USER = re.compile(
    rf"^\s*ALTER\s+USER\s+(?:IF\s+EXISTS\s+)?(?P<name>{IDENT})\s+SET\s+(?P<props>.*)$", re.I | re.S
)
GRANT_ROLE = re.compile(
    rf"^\s*GRANT\s+ROLE\s+(?P<role>{IDENT})\s+TO\s+(?P<kind>USER|ROLE)\s+(?P<to>{IDENT})\s*$", re.I
)
GRANT_ON = re.compile(
    rf"^\s*GRANT\s+(?P<privileges>[A-Z ,]+?)\s+ON\s+(?P<kind>WAREHOUSE|DATABASE)\s+"
    rf"(?P<name>{IDENT})\s+TO\s+ROLE\s+(?P<role>{IDENT})\s*$",
    re.I,
)
USE_ROLE = re.compile(rf"^\s*USE\s+ROLE\s+{IDENT}\s*$", re.I)
PROPERTY = re.compile(rf"\s*(?P<key>\w+)\s*=\s*(?P<value>'|{IDENT}|[\w.]+)", re.I)
USER_PROPERTIES = {
    "TYPE", "DEFAULT_ROLE", "DEFAULT_WAREHOUSE", "DEFAULT_NAMESPACE", "RSA_PUBLIC_KEY",
    "RSA_PUBLIC_KEY_2", "COMMENT", "DISPLAY_NAME", "LOGIN_NAME", "PASSWORD",
}  # fmt: skip
SERVICE_FORBIDDEN = {"PASSWORD", "FIRST_NAME", "MIDDLE_NAME", "LAST_NAME", "MUST_CHANGE_PASSWORD"}


class AccountError(Exception):
    """What Snowflake answers: error number, SQL state, message."""

    def __init__(self, errno: int, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.errno, self.sqlstate, self.message = errno, sqlstate, message


def name(identifier: str) -> str:
    """Snowflake's identifier rule: quoted as written, unquoted upper-cased."""
    if identifier.startswith('"') and identifier.endswith('"'):
        return identifier[1:-1]
    return identifier.upper()


def properties(text: str) -> dict[str, str]:
    """`KEY = value KEY2 = 'literal' …` -> {KEY: value}; anything else is an error."""
    found: dict[str, str] = {}
    rest = text.strip().rstrip(";").strip()
    while rest:
        match = PROPERTY.match(rest)
        if not match:
            raise AccountError(1003, "42000", f"SQL compilation error: cannot read {rest[:40]!r}")
        key = match.group("key").upper()
        if match.group("value") == "'":
            value, end = read_literal(rest, match.start("value"))
        else:
            value, end = name(match.group("value")), match.end("value")
        found[key] = value
        rest = rest[end:].strip()
    return found


@dataclass
class User:
    type: str = "PERSON"
    default_role: str | None = None
    default_warehouse: str | None = None
    rsa_public_key: str | None = None
    roles: list[str] = field(default_factory=list)


@dataclass
class Session:
    """What CURRENT_ROLE(), CURRENT_WAREHOUSE(), CURRENT_DATABASE() answer."""

    user: str
    role: str
    warehouse: str | None
    database: str | None


@dataclass
class Account:
    # Snowflake's system-defined roles exist in every account.
    roles: list[str] = field(
        default_factory=lambda: ["PUBLIC", "SYSADMIN", "USERADMIN", "SECURITYADMIN", "ACCOUNTADMIN"]
    )
    warehouses: list[str] = field(default_factory=list)
    users: dict[str, User] = field(default_factory=dict)
    # [privilege, object kind, object name, role]
    grants: list[list[str]] = field(default_factory=list)

    # --- persistence ---------------------------------------------------------------------

    @classmethod
    def load(cls, db_dir: Path) -> Account | None:
        """The account of DB_DIR, or None: no bootstrap ran there (the emulator is lenient)."""
        path = Path(db_dir) / ACCOUNT_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["users"] = {k: User(**v) for k, v in data["users"].items()}
        return cls(**data)

    def save(self, db_dir: Path) -> None:
        (Path(db_dir) / ACCOUNT_FILE).write_text(json.dumps(asdict(self), indent=1))

    # --- an administrator's statements -----------------------------------------------------

    @staticmethod
    def is_account_statement(sql: str) -> bool:
        return bool(
            CREATE.match(sql)
            or ALTER_USER.match(sql)
            or re.match(r"^\s*GRANT\b", sql, re.I)
            or USE_ROLE.match(sql)
        )

    def apply(self, sql: str) -> str:
        """Run one account statement (see is_account_statement); its status text."""
        if USE_ROLE.match(sql):
            return "Statement executed successfully."  # the administrator's roles: not modelled
        if match := CREATE.match(sql):
            kind, obj = match.group("kind").upper(), name(match.group("name"))
            props = properties(match.group("props"))
            if kind == "ROLE":
                self._add(self.roles, obj)
            elif kind == "WAREHOUSE":
                self._add(self.warehouses, obj)
            else:
                self.users.setdefault(obj, User())
                self._set_user(obj, props)
            return f"{kind.title()} {obj} successfully created."
        if match := ALTER_USER.match(sql):
            obj = name(match.group("name"))
            if obj not in self.users:
                raise AccountError(2003, "02000", f"User '{obj}' does not exist or not authorized.")
            self._set_user(obj, properties(match.group("props")))
            return "Statement executed successfully."
        if match := GRANT_ROLE.match(sql):
            role, to = name(match.group("role")), name(match.group("to"))
            self._exists(self.roles, role, "Role")
            if match.group("kind").upper() == "USER":
                if to not in self.users:
                    raise AccountError(
                        2003, "02000", f"User '{to}' does not exist or not authorized."
                    )
                self._add(self.users[to].roles, role)
            else:
                self._exists(self.roles, to, "Role")
            return "Statement executed successfully."
        if match := GRANT_ON.match(sql):
            kind, obj, role = (
                match.group("kind").upper(), name(match.group("name")), name(match.group("role"))
            )  # fmt: skip
            self._exists(self.roles, role, "Role")
            if kind == "WAREHOUSE":
                self._exists(self.warehouses, obj, "Warehouse")
            for privilege in match.group("privileges").split(","):
                grant = [" ".join(privilege.upper().split()), kind, obj, role]
                if grant not in self.grants:
                    self.grants.append(grant)
            return "Statement executed successfully."
        raise AccountError(
            9999, "99999", f"the emulator's account does not model this statement: {sql[:80]!r}"
        )

    def _set_user(self, user: str, props: dict[str, str]) -> None:
        unknown = set(props) - USER_PROPERTIES
        if unknown:
            raise AccountError(9999, "99999", f"user properties not modelled: {sorted(unknown)}")
        record = self.users[user]
        kind = props.get("TYPE", record.type).upper()
        if kind == "SERVICE" and set(props) & SERVICE_FORBIDDEN:
            raise AccountError(
                3541,
                "22023",
                f"A SERVICE user cannot have {sorted(set(props) & SERVICE_FORBIDDEN)}.",
            )
        record.type = kind
        if "DEFAULT_ROLE" in props:
            record.default_role = props["DEFAULT_ROLE"]
        if "DEFAULT_WAREHOUSE" in props:
            record.default_warehouse = props["DEFAULT_WAREHOUSE"]
        if "RSA_PUBLIC_KEY" in props:
            record.rsa_public_key = "".join(props["RSA_PUBLIC_KEY"].split())

    @staticmethod
    def _add(items: list[str], item: str) -> None:
        if item not in items:
            items.append(item)

    @staticmethod
    def _exists(items: list[str], item: str, kind: str) -> None:
        if item not in items:
            raise AccountError(2003, "02000", f"{kind} '{item}' does not exist or not authorized.")

    # --- a pipeline's session ----------------------------------------------------------------

    def has(self, role: str, privilege: str, kind: str, obj: str) -> bool:
        return [privilege, kind, obj, role] in self.grants

    def login(
        self,
        user: str | None,
        *,
        role: str | None,
        warehouse: str | None,
        database: str | None,
        database_exists: bool,
        password: bool,
        key_error: str | None,
    ) -> Session:
        """The session of a login, or AccountError as Snowflake refuses it. `key_error` is why
        the key-pair credential does not verify against the user's RSA_PUBLIC_KEY (None: it
        does, or it is a password login); use `public_key` to get that key."""
        login = name(user or "")
        record = self.users.get(login)
        if record is None or (password and record.type == "SERVICE"):
            raise AccountError(390100, "08004", "Incorrect username or password was specified.")
        if not password and key_error is not None:
            raise AccountError(390144, "08004", "JWT token is invalid.")
        chosen = name(role) if role else (record.default_role or "PUBLIC")
        if chosen != "PUBLIC" and chosen not in record.roles:
            said = (
                f"Role '{chosen}' specified in the connect string is"
                if role
                else f"User's configured default role '{chosen}' is"
            )
            raise AccountError(
                390189,
                "08004",
                f"{said} not granted to this user. Contact your local system administrator, "
                "or attempt to login with another role, e.g. PUBLIC.",
            )
        wanted = name(warehouse) if warehouse else record.default_warehouse
        usable = wanted in self.warehouses and self.has(chosen, "USAGE", "WAREHOUSE", wanted or "")
        db = name(database) if database else None
        visible = bool(db) and database_exists and self.has(chosen, "USAGE", "DATABASE", db or "")
        return Session(login, chosen, wanted if usable else None, db if visible else None)

    def public_key(self, user: str | None) -> str | None:
        """The user's RSA_PUBLIC_KEY as PEM, or None."""
        record = self.users.get(name(user or ""))
        if record is None or not record.rsa_public_key:
            return None
        body = record.rsa_public_key
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"

    def create_schema_error(self, session: Session, database: str) -> AccountError | None:
        if self.has(session.role, "CREATE SCHEMA", "DATABASE", database):
            return None
        return AccountError(
            3001,
            "42501",
            f"SQL access control error:\nInsufficient privileges to operate on database '{database}'",
        )
