"""Relay TCP connections from 0.0.0.0:PORT to HOST:TARGET_PORT (same pod).

    relay.py PORT HOST:TARGET_PORT

The project's fake Chess.com API (`python -m tests.fake_chesscom`) listens on loopback only
(tests/fake_chesscom/server.py binds 127.0.0.1); in the e2e cluster the Kestra task must
reach it through a Service, so this relays the pod's port to it. It starts listening only
once the target accepts connections, so a tcpSocket readiness probe on PORT means the API
is up. The pipeline builds every URL from its base URL (it reads only the month of an
archive URL, pipelines/dlt/chess_com/months.py), so the fake's loopback archive URLs do
not matter. Standard library only.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(port: int, host: str, target: int) -> None:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(relay, "0.0.0.0", port)
    print(f"relay 0.0.0.0:{port} -> {host}:{target}", flush=True)
    async with server:
        await server.serve_forever()


def wait_for(host: str, port: int) -> None:
    while True:
        try:
            socket.create_connection((host, port), timeout=2).close()
            return
        except OSError:
            time.sleep(1)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or ":" not in argv[1]:
        print(__doc__, file=sys.stderr)
        return 2
    host, _, target = argv[1].rpartition(":")
    wait_for(host, int(target))
    asyncio.run(serve(int(argv[0]), host, int(target)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
