"""``planexe-ax auth token|revoke|tokens``: API tokens of the HTTP gateway; the dashboard link of ``up`` and ``demo``.

Tokens live hashed in the token file (``PLANEXE_HTTP_TOKENS_FILE``, default ``http-tokens.json`` in the data
folder); writing that file is the authority to give access, so these commands need no running service.
The data folder's own admin token (``http-admin.token``, readable by its owner only) is what ``up`` and
``demo`` put in the dashboard link they print.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys

from planexe_ax.cli.exit_codes import EXIT_OK, EXIT_USAGE
from planexe_ax.config import Settings
from planexe_ax.ws_gateway.tokens import Role, TokenError, token_store

LOCAL_TOKEN_FILE = "http-admin.token"


def add_auth_http_parsers(auth: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``auth token``, ``auth revoke`` and ``auth tokens`` under the ``auth`` group."""
    token = auth.add_parser("token", help="create an API token and print it (alone, on the last line)")
    token.add_argument("--role", required=True, choices=[role.value for role in Role],
                       help="viewer: read; operator: start, control, plans; approver: answer the inbox; "
                       "agent: the HTTP agent protocol as --agent-id; admin: everything")  # fmt: skip
    token.add_argument("--name", required=True, help="who the token is: recorded as who did what")
    token.add_argument("--agent-id", default=None, help="agent tokens: the one agent id it may act as")
    token.set_defaults(auth_handler=issue_token)
    revoke = auth.add_parser("revoke", help="revoke the API token called NAME (effective at the next request)")
    revoke.add_argument("name")
    revoke.set_defaults(auth_handler=revoke_token)
    listing = auth.add_parser("tokens", help="list the API tokens: name, role, agent id, created (never the secret)")
    listing.set_defaults(auth_handler=list_tokens)


async def issue_token(settings: Settings, args: argparse.Namespace) -> int:
    """Create a token; print where it is stored, then the token."""
    store = token_store(settings)
    try:
        token = store.issue(args.name, Role(args.role), args.agent_id)
    except (TokenError, ValueError) as exc:
        sys.stderr.write(f"planexe-ax: {exc}\n")
        return EXIT_USAGE
    bound = f" acting as agent {args.agent_id}" if args.agent_id else ""
    sys.stdout.write(f"{args.role} token {args.name}{bound}, stored hashed in {store.path}; it is shown only now.\n")
    sys.stdout.write("Send it as `Authorization: Bearer <token>`:\n")
    sys.stdout.write(f"{token}\n")
    return EXIT_OK


async def revoke_token(settings: Settings, args: argparse.Namespace) -> int:
    """Remove a token by name."""
    store = token_store(settings)
    try:
        removed = store.revoke(args.name)
    except TokenError as exc:
        sys.stderr.write(f"planexe-ax: {exc}\n")
        return EXIT_USAGE
    if not removed:
        sys.stderr.write(f"planexe-ax: no token named {args.name} in {store.path}\n")
        return EXIT_USAGE
    sys.stdout.write(f"revoked {args.name}\n")
    return EXIT_OK


async def list_tokens(settings: Settings, args: argparse.Namespace) -> int:
    """One line per token, oldest first."""
    store = token_store(settings)
    try:
        records = store.records()
    except TokenError as exc:
        sys.stderr.write(f"planexe-ax: {exc}\n")
        return EXIT_USAGE
    if not records:
        sys.stdout.write(f"no API tokens in {store.path}\n")
    for record in records:
        bound = f" agent={record.agent_id}" if record.agent_id else ""
        sys.stdout.write(f"{record.name}\t{record.role.value}{bound}\tcreated {record.created_at[:19]}\n")
    return EXIT_OK


def local_admin_token(settings: Settings) -> str:
    """The data folder's own admin token, created on first use (named after the login, ``<login>@local``)."""
    path = settings.data_dir / LOCAL_TOKEN_FILE
    store = token_store(settings)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    if token and store.verify(token) is not None:
        return token
    token = store.issue(f"{_login()}@local", Role.ADMIN, replace=True)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    return token


def login_link(settings: Settings, url: str, fragment: str = "") -> str:
    """The dashboard link that logs a browser in with the data folder's admin token."""
    return f"{url}/?token={local_admin_token(settings)}{fragment}"


def _login() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no login name (containers without a passwd entry)
        name = ""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:40] or "owner"
