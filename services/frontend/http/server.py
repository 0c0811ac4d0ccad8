"""The HTTP API's server: uvicorn in the frontend's own event loop, on a
socket bound at start (so a taken port is known before the gRPC server
serves), stopped with the frontend and drained within its grace."""

from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn

from services.common.tls import ServerTLS
from services.frontend.http.app import make_app
from services.frontend.http.calls import GrpcCaller

log = logging.getLogger("cairn.frontend.http")
DEFAULT_HTTP_ADDRESS = "127.0.0.1:7374"


def bind(address: str) -> socket.socket:
    """A listening socket on host:port ([v6]:port for IPv6); OSError when it cannot be had."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"invalid HTTP address {address!r}: expected host:port")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP by name, not 0: asyncio sets TCP_NODELAY only on the accepted
    # sockets of a listener whose proto says TCP. Without it every answer on a
    # kept-alive connection waited ~40 ms (its body, a second write, held by
    # Nagle until the client's delayed ACK of the headers).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port_text)))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class HttpServer:
    """The HTTP API on one socket, calling the frontend's gRPC server at
    `grpc_listen`; HTTPS with tls (the frontend's certificate files, and its
    client CA for mutual TLS: then a client must present a certificate too)."""

    def __init__(self, sock: socket.socket, grpc_listen: str, tls: ServerTLS | None = None) -> None:
        self.sock = sock
        self.caller = GrpcCaller(grpc_listen)
        config = uvicorn.Config(
            make_app(self.caller),
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            **(tls.uvicorn_options() if tls is not None else {}),
        )
        config.load()
        self.server = uvicorn.Server(config)
        self._loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.server.lifespan = self.server.config.lifespan_class(self.server.config)  # as Server.serve does
        await self.server.startup(sockets=[self.sock])
        self._loop = asyncio.create_task(self.server.main_loop())
        host, port = self.sock.getsockname()[:2]
        scheme = "https" if self.server.config.ssl else "http"
        log.info("HTTP API serving on %s://%s:%s (docs at /docs)", scheme, host, port)

    async def stop(self, grace: float | None = None) -> None:
        """Takes no new connection, lets the requests in flight finish for up
        to grace seconds (None: as long as they take), cancels the rest. An
        event stream ends when its gRPC stream does: a frontend shutting down
        ends them at once (handlers.py), and the client reconnects. Once only:
        a second call does nothing."""
        if self._loop is None:
            return
        self.server.should_exit = True
        # uvicorn's type says int; it is only an asyncio.timeout's delay
        self.server.config.timeout_graceful_shutdown = grace  # type: ignore[assignment]
        loop, self._loop = self._loop, None
        await loop
        await self.server.shutdown(sockets=[self.sock])
        await self.caller.close()
