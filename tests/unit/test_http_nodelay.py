"""The HTTP API's listening socket (services/frontend/http/server.py bind())
gives every connection it accepts TCP_NODELAY: without it each answer on a
kept-alive connection waited ~40 ms for the client's delayed ACK (Nagle)."""

from __future__ import annotations

import asyncio
import socket

from services.frontend.http.server import bind


def test_an_accepted_connection_has_tcp_nodelay() -> None:
    async def accepted_nodelay() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        listener = bind("127.0.0.1:0")
        server = await asyncio.start_server(connected, sock=listener)
        try:
            host, port = listener.getsockname()[:2]
            _, writer = await asyncio.open_connection(host, port)
            try:
                return await asyncio.wait_for(seen, 10)
            finally:
                writer.close()
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(accepted_nodelay()) != 0
