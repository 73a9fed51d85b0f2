"""Settings, read from the environment with the prefix ``PLANEXE_``.

Build a :class:`Settings` in ``main()`` or a factory, never at import time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_NAMESPACE = re.compile(r"^[a-z0-9_-]*$")


class Settings(BaseSettings):
    """Every setting of PlanExe-AX. Field ``x_y`` is read from ``PLANEXE_X_Y``."""

    model_config = SettingsConfigDict(env_prefix="PLANEXE_", extra="ignore")

    nats_url: str | None = Field(
        default=None, description="NATS server URL(s), comma separated. Unset: start an embedded nats-server."
    )
    nats_creds: Path | None = Field(
        default=None,
        description="The NATS .creds file this process connects with (an agent's, or the CLI's against an external "
        "NATS). Unset: the identity of the process's role, signed with the account key in the identities folder.",
    )
    nats_auth_dir: Path | None = Field(
        default=None,
        description="Folder of the NATS operator, account and service identities (`planexe-ax auth init`). "
        "Unset: <data_dir>/nats-auth, which the embedded nats-server makes on its first start.",
    )
    audit_key_file: Path | None = Field(
        default=None,
        description="The coordinator's Ed25519 nkey seed that signs audit checkpoints. Unset: audit.nk in the "
        "identities folder, made (with audit.pub) on first use.",
    )
    audit_public_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Public nkeys (comma separated) whose audit checkpoints `audit verify` believes, besides the "
        "one in audit.pub next to the signing key.",
    )
    audit_checkpoint_every: int = Field(
        default=200, ge=1, description="The coordinator signs an execution's chain head after this many events."
    )
    nats_storage_bytes: int = Field(
        default=-1, ge=-1, description="JetStream file storage the account may use when it is made (-1: no limit)."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL of the read model (postgresql+asyncpg://... or sqlite+aiosqlite:///...). "
        "Unset: a SQLite file in the data folder.",
    )
    data_dir: Path = Field(default=Path(".planexe-ax"), description="Embedded NATS store, SQLite file, outputs.")
    namespace: str = Field(default="", description="Leading subject token and stream prefix; empty in production.")
    ack_wait_s: float = Field(default=30.0, gt=0, description="Lease of a task offer before it is redelivered.")
    max_deliver: int = Field(default=20, ge=1, description="Deliveries of one offer before it goes to the DLQ.")
    heartbeat_s: float = Field(default=5.0, gt=0, description="Agent heartbeat period.")
    agent_ttl_s: float = Field(default=15.0, gt=0, description="An agent silent this long is offline.")
    events_max_age_s: float = Field(default=90 * 24 * 3600, gt=0, description="How long AX_EVENTS keeps events.")
    duplicate_window_s: float = Field(default=600.0, gt=0, description="JetStream de-duplication window.")
    max_message_bytes: int = Field(
        default=1024 * 1024,
        ge=64 * 1024,
        description="Largest message a stream or bucket stores (max_msg_size), so the largest plan the bus carries "
        "(a little less: it travels with its envelope); the NATS server's max_payload caps it too.",
    )
    plan_inline_bytes: int = Field(
        default=256 * 1024,
        ge=0,
        description="A plan whose JSON is larger travels in the plan object store, and the start command and "
        "execution_created carry its id and SHA-256 instead (0: every plan); capped by what a message carries.",
    )
    max_plan_bytes: int = Field(
        default=64 * 1024**2, ge=64 * 1024, description="Largest plan (its JSON) a start may carry or refer to."
    )
    events_max_bytes: int = Field(
        default=1024**3, ge=1024 * 1024, description="AX_EVENTS keeps at most this many bytes (oldest dropped first)."
    )
    stream_max_bytes: int = Field(
        default=256 * 1024**2,
        ge=1024 * 1024,
        description="Bytes each other stream keeps at most: AX_TASKS refuses new offers when full (the coordinator "
        "dead-letters them), AX_COMMANDS and AX_DLQ drop their oldest. The server reserves every stream's limit "
        "when the stream is created.",
    )
    replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        description="Copies JetStream keeps of every stream and KV bucket: 1 on one server, 3 on a cluster of three "
        "or more (an existing stream is brought to this count when a service starts).",
    )
    leader_ttl_s: float = Field(
        default=3.0,
        gt=0,
        description="The coordinator's leadership lease, and the projector's and the webhook delivery service's: a "
        "holder that has not renewed it this long is replaced by a standby (the take-over time after a crash is "
        "about this).",
    )
    partitions: int = Field(
        default=32,
        ge=1,
        le=1024,
        description="Slices executions are hashed into; each is decided by one coordinator at a time, and running "
        "coordinators share them (a standby is one that holds none). Fixed for the life of a deployment: change it "
        "only with every coordinator stopped and no command waiting.",
    )
    default_max_attempts: int = Field(default=3, ge=1, description="Attempts of a subtask unless the plan says.")
    backoff_initial_s: float = Field(default=1.0, ge=0, description="Delay before the 2nd attempt of a subtask.")
    backoff_max_s: float = Field(default=60.0, ge=0, description="Longest delay between attempts (with jitter).")
    schedule_to_start_s: float = Field(default=600.0, gt=0, description="An offer no agent started is timed out.")
    start_to_close_s: float = Field(default=3600.0, gt=0, description="Longest run of one attempt (or timeout_hours).")
    no_agent_grace_s: float = Field(default=30.0, ge=0, description="Work no online agent can do goes to a person.")
    blocked_max_wait_s: float = Field(default=86400.0, gt=0, description="BLOCKED longer than this: ask a person.")
    review_threshold: float = Field(default=0.7, ge=0, le=1, description="Results below this confidence are reviewed.")
    approval_actions: list[str] = Field(
        default_factory=lambda: ["allocate_budget", "sign_contract", "file_regulatory", "send_money"],
        description="Actions whose tasks wait for a person's approval before they run.",
    )
    lag_scale_s: float = Field(
        default=3600.0, ge=0, description="Wall-clock seconds per plan hour of dependency lag (0 ignores lag)."
    )
    dispatch_slice: int = Field(
        default=256,
        ge=1,
        description="Most subtasks the coordinator dispatches in one decision round: a start with more ready work "
        "is decided and offered in slices of this many, with the agents' reports on the first slices decided "
        "between them.",
    )
    http_host: str = Field(default="127.0.0.1", description="Address the HTTP gateway listens on.")
    http_port: int = Field(default=8000, ge=0, le=65535, description="Port the HTTP gateway listens on.")
    http_agent_ttl_s: float = Field(
        default=300.0,
        gt=0,
        description="An HTTP agent not heard from (register, work poll, event post) this long goes offline; "
        "the offers it holds are given back.",
    )
    http_max_body: int = Field(
        default=10 * 1024 * 1024, ge=0, description="Largest request body in bytes; a larger one is answered 413."
    )
    http_cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins (scheme://host:port, comma separated) allowed to call the API from a browser and to "
        "open its WebSockets, besides the gateway's own address.",
    )
    http_tokens_file: Path | None = Field(
        default=None,
        description="The API tokens (hashed) that `planexe-ax auth token` writes. Unset: http-tokens.json in the "
        "data folder. Several gateways share one file.",
    )
    fetch_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts, host:port or CIDRs (comma separated) the built-in agents may fetch, and webhooks may be "
        "delivered to, although they are "
        "loopback, private, link-local or metadata addresses.",
    )
    webhook_backoff_initial_s: float = Field(
        default=5.0, gt=0, description="Delay before the 2nd attempt of a webhook delivery; it doubles each attempt."
    )
    webhook_backoff_max_s: float = Field(
        default=3600.0, gt=0, description="Longest delay between two attempts of a webhook delivery."
    )
    webhook_give_up_s: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="A webhook delivery still failing this long after it fell due fails, and its webhook is "
        "disabled with the reason (an operator re-enables it with PATCH status=active).",
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="Longest wait for a webhook receiver's answer.")
    webhook_poll_s: float = Field(
        default=1.0,
        gt=0,
        description="Longest the delivery service waits before looking for due deliveries again (it looks at once "
        "when new events arrive).",
    )
    log_level: str = Field(default="INFO", description="Log level of the planexe_ax loggers.")
    trace_url: str | None = Field(
        default=None,
        description="The trace viewer's page of a trace, with {trace_id} "
        "(e.g. http://localhost:16686/trace/{trace_id}): the dashboard and the API link each execution to its trace.",
    )
    smtp_url: str | None = Field(
        default=None,
        description="smtp://[user:password@]host:port[?starttls=true] (or smtps://) for send_email and the notifier; "
        "unset: send_email writes to the outbox folder and the notifier mails nobody.",
    )
    public_url: str | None = Field(
        default=None,
        description="The dashboard's address in the links people are mailed (e.g. https://ax.example.org). "
        "Unset: http://<http_host>:<http_port>.",
    )
    notify_to: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Who is told when an inbox item opens, as JSON: inbox kind (approval, review, escalation, "
        'human_task, acknowledge: a webhook disabled) or "*" -> email addresses, e.g. '
        '{"approval": ["boss@example.org"], "*": ["ops@example.org"]}. '
        "A plan's metadata.notify adds addresses the same way (or a list, for every kind).",
    )
    notify_from: str = Field(default="planexe-ax@localhost", description="The From address of notifications.")
    notify_retry_s: float = Field(
        default=5.0, gt=0, description="How long the notifier waits before trying again when the mail server failed."
    )
    notify_link_ttl_s: float = Field(
        default=7 * 24 * 3600, gt=0, description="How long a mailed one-time link may answer its inbox item."
    )

    @field_validator("trace_url")
    @classmethod
    def _trace_url_has_the_id(cls, value: str | None) -> str | None:
        if value and "{trace_id}" not in value:
            raise ValueError(f"trace_url {value!r} must contain {{trace_id}}")
        return value or None

    @field_validator("namespace")
    @classmethod
    def _namespace_is_a_token(cls, value: str) -> str:
        if not _NAMESPACE.match(value):
            raise ValueError(f"namespace {value!r} must be lower-case letters, digits, '_' or '-'")
        return value

    @field_validator("http_cors_origins", "fetch_allow", "audit_public_keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def tokens_path(self) -> Path:
        """The API token file: ``http_tokens_file``, else ``http-tokens.json`` in the data folder."""
        return self.http_tokens_file or self.data_dir / "http-tokens.json"

    @property
    def links_path(self) -> Path:
        """The one-time inbox links (hashed): ``inbox-links.json`` beside the API token file."""
        return self.tokens_path.with_name("inbox-links.json")

    @property
    def dashboard_url(self) -> str:
        """The dashboard's address in mailed links: ``public_url``, else the gateway's own address."""
        return (self.public_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")

    @property
    def effective_database_url(self) -> str:
        """The read-model URL: the configured one, else a SQLite file in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'readmodel.sqlite3').resolve()}"

    @property
    def nats_identities_dir(self) -> Path:
        """Where the NATS identities are: the configured folder, else ``<data_dir>/nats-auth``."""
        return self.nats_auth_dir or self.data_dir / "nats-auth"

    @property
    def effective_audit_key_file(self) -> Path:
        """The audit signing key: the configured file, else ``audit.nk`` in the identities folder."""
        return self.audit_key_file or self.nats_identities_dir / "audit.nk"

    @property
    def outputs_dir(self) -> Path:
        """Where agents write what they produce, one folder per execution."""
        return self.data_dir / "outputs"
