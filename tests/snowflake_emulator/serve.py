"""Serve fakesnow's Snowflake REST emulation over HTTP, for a real, unpatched connector.

    python serve.py DB_DIR [--port PORT] [--public-key PEM]

Prints one JSON line once the server listens: host, port, and the `env` a client adds to
reach it (dlt's DESTINATION__SNOWFLAKE__CREDENTIALS__QUERY: connector host/port/protocol);
then serves until SIGTERM/SIGINT. Databases persist as DuckDB files in DB_DIR, internal
stages (PUT files) in DB_DIR/tmp. Runs in this lane's environment (.venv-snowflake) next to
a client from any other environment, e.g. one built from pipelines/dlt/requirements.lock.

On top of fakesnow 0.12.1's server (fakesnow/server.py) this adds what it lacks for the
client that production uses, snowflake-connector-python 5.x (a Rust core):
  * the login response carries a master token (the core rejects a login without one:
    "Failed to login: Missing response field: master token");
  * multi-statement requests (dlt sends every query with MULTI_STATEMENT_COUNT=0 and batches
    DDL as `stmt; stmt; ...`): run one by one, answered the way Snowflake does, with the
    children's query ids in `resultIds`, each fetched by GET /queries/{id}/result;
  * a PUT's stage info complete (region, ...) and GCS object semantics for the upload
    (HEAD before PUT, create-only PUT, X-Goog-SignedHeaders covering the headers it sends);
  * the shim's SQL rewrites (shim.py) also before the server parses a statement's type, and
    its JSON COPY by column name (dlt's state table goes up as JSON);
  * a shared database in DB_DIR for every session, so one process's load is the next
    process's state, as on an account;
  * with --public-key, only key-pair logins whose JWT that key verifies (as the account's
    RSA_PUBLIC_KEY would): a wrong key or passphrase fails the login as on Snowflake;
  * once an administrator ran the bootstrap in DB_DIR (run_on_fakesnow.py DB_DIR --admin
    FILE, before the server starts), the account's rules (account.py): the login's user,
    JWT (checked against that user's RSA_PUBLIC_KEY), role and warehouse, nothing created
    on connect, and CURRENT_ROLE()/CURRENT_WAREHOUSE()/CURRENT_DATABASE() as granted.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import socket
import sys
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import jwt
import snowflake.connector.errors
import uvicorn
from sqlglot import Dialect
from sqlglot.tokens import TokenType
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from fakesnow.instance import FakeSnow as FakeSnowInstance

HERE = Path(__file__).resolve().parent
LOGIN_PATH = "/session/v1/login-request"
QUERY_PATH = "/queries/v1/query-request"
# Snowflake's statement type id of a multi-statement parent, and its one-row result.
MULTI_STATEMENT_TYPE_ID = 0x1000
MULTI_STATEMENT_ROWTYPE = [
    {
        "name": "multiple statement execution",
        "database": "",
        "schema": "",
        "table": "",
        "type": "text",
        "nullable": False,
        "length": 16777216,
        "byteLength": 16777216,
        "precision": None,
        "scale": None,
        "collation": None,
    }
]
STAGE_INFO_DEFAULTS: dict[str, Any] = {
    "region": "US-CENTRAL1",
    "path": "",
    "endPoint": None,
    "storageAccount": None,
    "isClientSideEncrypted": False,
    "useRegionalUrl": False,
    "useVirtualUrl": False,
    "creds": {},
}
SIGNED_HEADERS = ("host", "x-goog-if-generation-match", "x-goog-meta-sfc-digest")
SNOWFLAKE = Dialect.get_or_raise("snowflake")

# x-goog-meta-* headers of files in the stage bucket, by path, returned by HEAD.
bucket_metadata: dict[str, dict[str, str]] = {}
# Results of multi-statement children, by query id, until the client fetches them; dlt only
# reads the first, so the oldest are dropped beyond a bound.
child_results: OrderedDict[str, dict[str, Any]] = OrderedDict()
MAX_CHILD_RESULTS = 10_000
# fakesnow.server, imported by load_fakesnow() once the temp dir points into DB_DIR.
fakesnow_server: ModuleType
# The server's DB_DIR (account.json there: the account's rules apply) and, from shim.py,
# the context through which a login reaches the connection fakesnow opens for it.
DB_DIR: Path
Account: Any
PENDING_LOGIN: Any


def split_statements(sql: str) -> list[str]:
    """`a; b;` -> ['a', 'b'], cutting only at semicolons outside strings and comments."""
    cuts = [t.start for t in SNOWFLAKE.tokenize(sql) if t.token_type == TokenType.SEMICOLON]
    pieces, start = [], 0
    for cut in cuts:
        pieces.append(sql[start:cut])
        start = cut + 1
    pieces.append(sql[start:])
    return [p.strip() for p in pieces if p.strip()]


async def read_json(request: Request) -> dict[str, Any]:
    body = await request.body()
    if request.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return json.loads(body)


def with_body(request: Request, body: dict[str, Any]) -> Request:
    """The same request (headers, token, query string) carrying another JSON body."""
    raw = json.dumps(body).encode()
    skip = {b"content-encoding", b"content-length"}
    headers = [(k, v) for k, v in request.scope["headers"] if k.lower() not in skip]
    scope = {**request.scope, "headers": [*headers, (b"content-length", str(len(raw)).encode())]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    return Request(scope, receive)


# Set by --public-key: logins must then be key-pair (JWT) logins signed by its private key.
public_key: Any = None


def jwt_error(data: dict[str, Any], key: Any = None) -> str | None:
    """Why a login's key-pair JWT is not valid for `key` (default: --public-key; None: it
    is), checked as Snowflake does: RS256 signature, `sub` = ACCOUNT.USER, not expired."""
    if data.get("AUTHENTICATOR") != "SNOWFLAKE_JWT":
        return f"authenticator {data.get('AUTHENTICATOR')!r} is not SNOWFLAKE_JWT"
    if key is None and public_key is None:
        return "the user has no RSA_PUBLIC_KEY"
    try:
        claims = jwt.decode(data.get("TOKEN") or "", key or public_key, algorithms=["RS256"])
    except jwt.PyJWTError as exc:
        return f"JWT not valid for the registered public key ({type(exc).__name__})"
    user = f"{data.get('ACCOUNT_NAME', '')}.{data.get('LOGIN_NAME', '')}".upper()
    if str(claims.get("sub", "")).upper() != user:
        return f"JWT subject {claims.get('sub')!r} is not {user!r}"
    return None


def refused(code: int, message: str) -> JSONResponse:
    return JSONResponse({"data": None, "code": f"{code:06d}", "message": message, "success": False})


async def login(request: Request) -> Response:
    account = Account.load(DB_DIR)
    if account is not None:
        data = (await read_json(request)).get("data") or {}
        jwt_login = data.get("AUTHENTICATOR") == "SNOWFLAKE_JWT"
        key = account.public_key(data.get("LOGIN_NAME"))
        pending = {
            "user": data.get("LOGIN_NAME"),
            "role": request.query_params.get("roleName"),
            "warehouse": request.query_params.get("warehouse"),
            "password": not jwt_login,
            "key_error": (jwt_error(data, key) if key else "no RSA_PUBLIC_KEY")
            if jwt_login
            else None,
        }
        if pending["key_error"]:
            print(f"login rejected: {pending['key_error']}", file=sys.stderr, flush=True)
        token = PENDING_LOGIN.set(pending)
        try:
            response = await fakesnow_server.login_request(request)
        except snowflake.connector.errors.DatabaseError as exc:
            print(f"login refused: {exc.errno} {exc.msg}", file=sys.stderr, flush=True)
            return refused(exc.errno, exc.msg)
        finally:
            PENDING_LOGIN.reset(token)
        return with_master_token(response)
    if public_key is not None:
        error = jwt_error((await read_json(request)).get("data") or {})
        if error:
            print(f"login rejected: {error}", file=sys.stderr, flush=True)
            return JSONResponse(
                {
                    "data": None,
                    "code": "390144",
                    "message": "JWT token is invalid.",
                    "success": False,
                }
            )
    return with_master_token(await fakesnow_server.login_request(request))


def with_master_token(response: Response) -> Response:
    body = json.loads(bytes(response.body))
    token = body["data"]["token"]
    # Token lifetimes as Snowflake's defaults (4 h session, 4 h master); fakesnow never expires.
    body["data"].update(
        masterToken=f"master-{token}",
        validityInSeconds=14400,
        masterValidityInSeconds=14400,
        sessionId=abs(hash(token)) % 10**12,
    )
    return JSONResponse(body)


def complete_stage_info(response: Response) -> Response:
    """A PUT's GCS-style stage info with every field Snowflake sends (the 5.x core requires
    them, fakesnow omits some); presigned URL and location stay fakesnow's."""
    result = json.loads(bytes(response.body))
    stage = (result.get("data") or {}).get("stageInfo")
    if not stage:
        return response
    for field, value in STAGE_INFO_DEFAULTS.items():
        stage.setdefault(field, value)
    if url := stage.get("presignedUrl"):
        # The core sends these headers with a GCS upload only if the URL's signature covers
        # them (as a real signed URL's X-Goog-SignedHeaders does).
        stage["presignedUrl"] = f"{url}?X-Goog-SignedHeaders={';'.join(SIGNED_HEADERS)}"
    return JSONResponse(result, status_code=response.status_code)


async def query(request: Request) -> Response:
    body = await read_json(request)
    statements = split_statements(body.get("sqlText") or "")
    multi = (body.get("parameters") or {}).get("MULTI_STATEMENT_COUNT")
    if len(statements) < 2 or multi is None or body.get("bindings"):
        return complete_stage_info(await fakesnow_server.query_request(with_body(request, body)))
    if multi not in (0, len(statements)):
        return JSONResponse(
            {
                "data": {"errorCode": "000008", "sqlState": "0A000"},
                "code": "000008",
                "message": f"Actual statement count {len(statements)} did not match the "
                f"desired statement count {multi}.",
                "success": False,
            }
        )
    # Snowflake runs the statements in order and stops at the first error, which the parent
    # reports; fakesnow's own code/sqlstate pass through so dlt classifies it as it would.
    ids = []
    for sql in statements:
        child = await fakesnow_server.query_request(with_body(request, {**body, "sqlText": sql}))
        result = json.loads(bytes(child.body))
        if not result.get("success"):
            return JSONResponse(result, status_code=child.status_code)
        query_id = result["data"]["queryId"]
        child_results[query_id] = result
        ids.append(query_id)
        while len(child_results) > MAX_CHILD_RESULTS:
            child_results.popitem(last=False)
    parent = dict(child_results[ids[-1]]["data"])
    parent.update(
        queryId=f"{ids[0]}-parent",
        statementTypeId=MULTI_STATEMENT_TYPE_ID,
        resultIds=",".join(ids),
        resultTypes=",".join(str(child_results[i]["data"]["statementTypeId"]) for i in ids),
        rowtype=MULTI_STATEMENT_ROWTYPE,
        queryResultFormat="json",
        rowset=[["Multiple statements executed successfully."]],
        total=1,
    )
    parent.pop("rowsetBase64", None)
    return JSONResponse({"data": parent, "success": True})


async def query_result(request: Request) -> Response:
    fakesnow_server.to_conn(fakesnow_server.to_token(request))  # same auth as other calls
    result = child_results.pop(request.path_params["query_id"], None)
    if result is None:
        return JSONResponse(
            {"data": None, "code": "000709", "message": "Statement not found", "success": False}
        )
    return JSONResponse(result)


async def bucket_object(request: Request) -> Response:
    """GCS object semantics for the stage bucket: HEAD tells whether a file is there (with
    its metadata), PUT with `x-goog-if-generation-match: 0` creates only (412 if present)."""
    path = request.path_params["path"]
    root = Path(fakesnow_server.stage.LOCAL_BUCKET_PATH).resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root):
        return Response(status_code=400)
    exists = target.is_file()
    if request.method == "HEAD":
        return Response(status_code=200 if exists else 404, headers=bucket_metadata.get(path))
    if exists and request.headers.get("x-goog-if-generation-match") == "0":
        return Response(status_code=412)
    response = await fakesnow_server.bucket_upload(request)
    if response.status_code == 200:
        bucket_metadata[path] = {
            k: v for k, v in request.headers.items() if k.lower().startswith("x-goog-meta-")
        }
        # What went up, for the tests: dlt REMOVEs each file once loaded (keep_staged_files).
        with (DB_DIR / "stage_uploads.log").open("a") as log:
            log.write(path + "\n")
    return response


async def telemetry(_: Request) -> Response:
    return JSONResponse({"success": True, "data": None})


def load_fakesnow(db_dir: Path) -> FakeSnowInstance:
    """Import fakesnow with its stage directory inside DB_DIR, shims on; the shared database."""
    global fakesnow_server
    # fakesnow makes its stage directory (tempfile.mkdtemp("fakesnow_bucket_")) on import
    # (fakesnow/transforms/stage.py): point the temp dir into DB_DIR first, so nothing is
    # left behind in /tmp.
    (db_dir / "tmp").mkdir(exist_ok=True)
    tempfile.tempdir = str(db_dir / "tmp")
    import fakesnow.server
    from fakesnow.instance import FakeSnow
    from fakesnow.transforms import stage

    sys.path.insert(0, str(HERE))
    import account
    import shim
    from shim import install_sql_shims, rewrite

    global DB_DIR, Account, PENDING_LOGIN
    DB_DIR, Account, PENDING_LOGIN = db_dir, account.Account, shim.PENDING_LOGIN
    assert Path(stage.LOCAL_BUCKET_PATH).is_relative_to(db_dir), stage.LOCAL_BUCKET_PATH
    fakesnow_server = fakesnow.server
    install_sql_shims(db_dir)
    # fakesnow decides a statement's type (and so its result shape) before running it: let it
    # see the rewritten SQL the shim runs.
    parse_one = fakesnow_server.parse_one
    fakesnow_server.parse_one = lambda sql, *a, **k: parse_one(rewrite(sql), *a, **k)
    # One database for every session (fakesnow's default is in memory).
    fakesnow_server.shared_fs = FakeSnow(db_path=db_dir)
    return fakesnow_server.shared_fs


def make_app() -> Starlette:
    ours = [
        Route(LOGIN_PATH, login, methods=["POST"]),
        Route(QUERY_PATH, query, methods=["POST"]),
        Route("/queries/{query_id}/result", query_result, methods=["GET"]),
        Route("/fs_bucket/{path:path}", bucket_object, methods=["PUT", "HEAD"]),
        Route("/telemetry/send", telemetry, methods=["POST"]),
    ]
    replaced = {r.path for r in ours}
    theirs = [r for r in fakesnow_server.routes if r.path not in replaced]
    return Starlette(routes=[*ours, *theirs])


def client_settings(host: str, port: int) -> dict[str, str]:
    """What a dlt client adds to its environment: connector kwargs as credential query params."""
    connect = {"host": host, "port": port, "protocol": "http"}
    return {"DESTINATION__SNOWFLAKE__CREDENTIALS__QUERY": json.dumps(connect)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db_dir", type=Path, help="where the DuckDB files and stages live")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--log-level", default="warning", help="uvicorn's; info logs each call")
    parser.add_argument(
        "--public-key", type=Path, help="PEM: accept only key-pair logins signed by its private key"
    )
    args = parser.parse_args(argv)
    if args.public_key:
        global public_key
        public_key = args.public_key.read_text()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    db_dir = args.db_dir.resolve()
    db_dir.mkdir(parents=True, exist_ok=True)

    # Bind first, so the printed port is the one already listening (no race for a free port).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    host, port = sock.getsockname()[:2]
    fake = load_fakesnow(db_dir)
    config = uvicorn.Config(make_app(), log_level=args.log_level)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while thread.is_alive() and not server.started:
        thread.join(0.05)
    if not server.started:
        print("error: fakesnow server did not start", file=sys.stderr)
        return 1

    info = {
        "host": host,
        "port": port,
        "url": f"http://{host}:{port}",
        "db_dir": str(db_dir),
        "pid": os.getpid(),
        "env": client_settings(host, port),
    }
    print(json.dumps(info), flush=True)
    while not stop.wait(0.5) and thread.is_alive():
        pass
    server.should_exit = True
    thread.join(10)
    # Checkpoint DuckDB so the files are complete for whoever opens them next.
    fake.duck_conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
