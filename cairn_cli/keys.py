"""`cairn keys create|list|revoke`: API keys through the frontend's KeyService
(an admin key is needed), printed as tables or, with --json, in key_json's
shape. A new key's secret is printed once, here, and never again."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cairn import key_json
from cairn.v1 import key_service_pb2 as kpb
from cairn.v1 import key_service_pb2_grpc as kgrpc
from cairn_cli import output
from cairn_cli.frontend import Frontend


def add_parsers(sub: Any, client_args: Any, time_arg: Any) -> None:
    """The `keys` command and its subcommands."""
    keys = sub.add_parser(
        "keys", help="create, list and revoke API keys (needs an admin key)"
    ).add_subparsers(dest="keys_command", required=True, metavar="SUBCOMMAND")
    kc = keys.add_parser(
        "create",
        help="create an API key for a namespace and role; its secret is printed once",
        description="Creates an API key that works in --namespace for --role: client (trigger, read, "
        "cancel runs, events, tokens), worker (serve tasks) or admin (everything, and keys, queues, "
        "schedules). The key is printed once; keep it in a secret store.",
    )
    kc.add_argument("--role", required=True, choices=list(key_json.ROLES), help="what the key may do")
    kc.add_argument("--name", default="", help="a label for people, e.g. 'billing workers'")
    kc.add_argument(
        "--expires",
        type=time_arg,
        default=None,
        help="when it stops working: a duration from now (30d, 12h) or an RFC 3339 time",
    )
    kc.add_argument(
        "--all-namespaces", action="store_true", help="an admin key for every namespace (needs one itself)"
    )
    client_args(kc)
    kl = keys.add_parser("list", help="list the namespace's keys (never their secrets)")
    client_args(kl)
    kr = keys.add_parser("revoke", help="revoke a key at once")
    kr.add_argument("key_id", metavar="ID", help="the key's id (cairn keys list)")
    client_args(kr)


def run(client: Frontend, args: argparse.Namespace) -> int:
    """Runs `cairn keys SUBCOMMAND`."""
    stub = kgrpc.KeyServiceStub(client.channel())  # type: ignore[no-untyped-call]
    if args.keys_command == "create":
        request = kpb.CreateKeyRequest(
            namespace=client.namespace,
            role=key_json.ROLES[args.role],
            name=args.name,
            all_namespaces=args.all_namespaces,
        )
        if args.expires is not None:
            request.expires_at.FromDatetime(args.expires)
        created: kpb.CreateKeyResponse = client.call(stub.CreateKey, request)
        key = key_json.key_to_dict(created.key)
        if args.json:
            output.print_json({**key, "secret": created.secret})
        else:
            print(created.secret)
            print(
                f"created {key['role']} key {key['id']} for namespace {key['namespace']!r}; "
                "this is the only time its secret is shown",
                file=sys.stderr,
            )
        return 0
    if args.keys_command == "list":
        listed: kpb.ListKeysResponse = client.call(
            stub.ListKeys, kpb.ListKeysRequest(namespace=client.namespace)
        )
        show([key_json.key_to_dict(k) for k in listed.keys], args.json)
        return 0
    revoked: kpb.RevokeKeyResponse = client.call(
        stub.RevokeKey, kpb.RevokeKeyRequest(namespace=client.namespace, id=args.key_id)
    )
    show([key_json.key_to_dict(revoked.key)], args.json)
    return 0


def show(keys: list[key_json.KeyJSON], as_json: bool) -> None:
    """Keys one JSON object per line, or as a table."""
    if as_json:
        for k in keys:
            output.print_json(k)
        return
    rows = [
        [
            k["id"],
            k["namespace"],
            k["role"],
            k["name"] or "-",
            k["created_at"] or "-",
            k["expires_at"] or "never",
            "revoked" if k["revoked_at"] else "active",
        ]
        for k in keys
    ]
    print(output.table(["ID", "NAMESPACE", "ROLE", "NAME", "CREATED", "EXPIRES", "STATE"], rows))
