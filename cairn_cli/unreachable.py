"""Why a command reached no Cairn frontend, as the one line `cairn` prints for
Unreachable (cairn_cli.main), naming the cause and what to do about it.

The cause is found by resolving the address and opening a TCP connection to it
(cairn.addresses.unreachable_reason), which tells the causes apart better than
gRPC's words do; for a gRPC target it does not look into (dns:///...), gRPC's
reason is read instead. The causes, each with its own line:

- UNKNOWN_HOST: the host name does not resolve (a typo, or the wrong network);
- NO_LISTENER: nothing listens on the port (connection refused), the port does
  not answer, or no route leads there: is `cairn dev` running?;
- NO_TLS: a connection opened but no TLS one (the --tls-* options to check);
- NOT_A_FRONTEND: a connection opened but no gRPC answered over it (another
  server, the HTTP API's port, or a frontend that serves TLS);
- STOPPED: a frontend had answered earlier in the command and then stopped."""

from __future__ import annotations

import re

from cairn.addresses import is_grpc_target, unreachable_reason

UNKNOWN_HOST = "unknown host"
NO_LISTENER = "nothing listening"
NO_TLS = "no TLS connection"
NOT_A_FRONTEND = "not a Cairn frontend"
STOPPED = "stopped answering"

HINT = "set --address or CAIRN_ADDRESS to use another one"
# gRPC's words for a name that does not resolve and for a refused connection.
_GRPC_UNKNOWN = re.compile(r"errors resolving|DNS resolution failed|Domain name not found", re.IGNORECASE)
_GRPC_REFUSED = re.compile(r"Connection refused", re.IGNORECASE)


def cause(address: str, details: str, tls: bool = False, reached: bool = False) -> tuple[str, str]:
    """(the cause, the reason found) of no frontend answering at address;
    details is gRPC's reason, tls whether the command asked for TLS, reached
    whether a frontend had answered earlier in the command. The reason is
    unreachable_reason's ("the host 'x' is unknown ...", "nothing listens on
    h:p (connection refused)", ...), or for a gRPC target what gRPC's details
    name; "" when a connection opened."""
    reason = unreachable_reason(address)
    if not reason and is_grpc_target(address):
        if _GRPC_UNKNOWN.search(details):
            reason = f"its host is unknown ({details})"
        elif _GRPC_REFUSED.search(details):
            reason = f"nothing listens there (connection refused: {details})"
    if reason:
        return (UNKNOWN_HOST if "is unknown" in reason else NO_LISTENER), reason
    if reached:
        return STOPPED, ""
    return (NO_TLS if tls else NOT_A_FRONTEND), ""


def unreachable_message(address: str, exc: Exception, tls: bool = False, reached: bool = False) -> str:
    """The line `cairn` prints when no frontend answered at address (exc, the
    Unreachable, carries gRPC's reason): "error: ", the cause (cause()) in
    words, and what to do."""
    found, reason = cause(address, str(exc), tls, reached)
    if found == UNKNOWN_HOST:
        return f"error: cannot reach the Cairn frontend at {address}: {reason}; {HINT}"
    if found == NO_LISTENER:
        return (
            f"error: cannot reach the Cairn frontend at {address}: {reason}; is `cairn dev` running? ({HINT})"
        )
    if found == STOPPED:
        return f"error: the Cairn frontend at {address} stopped answering ({exc}); try again later ({HINT})"
    if found == NO_TLS:
        return (
            f"error: no TLS connection to the Cairn frontend at {address} ({exc}): check --tls-ca "
            "(CAIRN_TLS_CA, the CA that signed its certificate) and, when it asks for client "
            f"certificates, --tls-cert and --tls-key; or is it a Cairn frontend's address? ({HINT})"
        )
    opened = "" if is_grpc_target(address) else "it accepted a connection but "
    return (
        f"error: {address} is not a Cairn frontend: {opened}did not answer over gRPC ({exc}); is it a "
        "Cairn frontend's gRPC address (`cairn dev` serves gRPC on its --port, 7373, and HTTP on the "
        f"next one), or does it serve TLS (then pass --tls-ca or set CAIRN_TLS_CA)? ({HINT})"
    )
