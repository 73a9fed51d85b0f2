"""``planexe-ax auth agent|init``: NATS identities for agents, and the setup of an external nats-server.

Every ``auth`` subcommand sets ``auth_handler`` (an async function of settings and arguments) with
``set_defaults``, so the ``auth`` group in cli/main.py dispatches without knowing the subcommands.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from planexe_ax.bus import SERVICE_ROLES, Identities, Subjects, check_id, check_token
from planexe_ax.bus.jwt import write_secret
from planexe_ax.cli.exit_codes import EXIT_OK
from planexe_ax.config import Settings
from planexe_ax.errors import ConfigError


def add_nats_auth_parsers(auth: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``auth agent`` and ``auth init`` to the ``auth`` group."""
    agent = auth.add_parser("agent", help="sign a NATS .creds file for one agent (takes effect at once, no restart)")
    agent.add_argument("agent_id", help="the agent's id: letters, digits, '_' or '-'")
    agent.add_argument(
        "--capability", action="append", required=True, dest="capabilities", help="an action it does (repeatable)"
    )
    agent.add_argument("--out", type=Path, required=True, help="the .creds file to write (readable by you only)")
    agent.set_defaults(auth_handler=sign_agent)
    init = auth.add_parser(
        "init", help="make an operator, an account and service identities for an external nats-server"
    )
    init.add_argument("--out", type=Path, required=True, help="a new folder for keys, JWTs, config and .creds")
    init.set_defaults(auth_handler=init_identities)


def _identities(settings: Settings) -> Identities:
    folder = settings.nats_identities_dir
    if not Identities.exists(folder):
        raise ConfigError(
            f"no NATS identities in {folder}: start `planexe-ax up` once in this folder, "
            "or point PLANEXE_NATS_AUTH_DIR at the folder `planexe-ax auth init` made"
        )
    return Identities.load(folder)


async def sign_agent(settings: Settings, args: argparse.Namespace) -> int:
    """Write the ``.creds`` of one agent identity, signed with the account key of the identities folder."""
    try:
        agent_id = check_id(args.agent_id, "agent id")
        capabilities = [check_token(c, "capability") for c in args.capabilities]
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    text = _identities(settings).agent_creds(Subjects(settings.namespace), agent_id, capabilities)
    path = write_secret(args.out, text)
    sys.stdout.write(
        f"wrote {path}: agent {agent_id} may work on {', '.join(capabilities)}; "
        f"connect with PLANEXE_NATS_CREDS={path}\n"
    )
    return EXIT_OK


async def init_identities(settings: Settings, args: argparse.Namespace) -> int:
    """Make identities for an external server: operator, account, config, and one ``.creds`` per service."""
    made = Identities.create(args.out, jetstream_bytes=settings.nats_storage_bytes)
    subjects = Subjects(settings.namespace)
    written = [made.role_creds(role, subjects) for role in SERVICE_ROLES]
    sys.stdout.write(
        f"wrote {made.folder}: nats-server.conf (run nats-server -c it with -js), operator.jwt, account.jwt, "
        f"and {', '.join(p.name for p in written)} in {written[0].parent}; "
        f"sign agents with PLANEXE_NATS_AUTH_DIR={made.folder} planexe-ax auth agent ...\n"
    )
    return EXIT_OK
