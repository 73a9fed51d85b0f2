"""Rule A8: docker-compose.yml and the Dockerfile, checked without Docker (there is none on dev or CI machines)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from planexe_ax.bus import SERVICE_ROLES
from planexe_ax.cli.services import ROLE_OF, SERVICES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

# The planexe-ax subcommands a compose service may run: read from the CLI itself.
PLANEXE_COMMANDS = tuple(f"serve {name}" for name in SERVICES)
# Services that run once and exit (migrations, seeding): they need no healthcheck.
ONE_SHOTS: frozenset[str] = frozenset()
OUR_SERVICES = SERVICES
ON_POSTGRES = tuple(name for name in SERVICES if name != "notifier")
"""The services that use the read model (the notifier reads only NATS)."""
VARIABLE = re.compile(r"\$\{([^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def command_of(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else " ".join(shlex.split(command))


def build_context(service: dict[str, Any]) -> tuple[Path, str] | None:
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        return ROOT / build, "Dockerfile"
    return ROOT / build.get("context", "."), build.get("dockerfile", "Dockerfile")


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


# ---------------------------------------------------------------------------------------------- compose
def test_our_services_are_all_there(services: dict[str, dict[str, Any]]) -> None:
    assert {"nats", "postgres", *OUR_SERVICES} <= set(services)


def test_every_service_has_a_healthcheck_or_is_a_one_shot(services: dict[str, dict[str, Any]]) -> None:
    missing = []
    for name, service in services.items():
        if name in ONE_SHOTS:
            assert service.get("restart", "no") == "no", f"one-shot {name} must not be restarted"
            continue
        test = (service.get("healthcheck") or {}).get("test")
        if not test or service["healthcheck"].get("disable"):
            missing.append(name)
    assert missing == [], f"services without a healthcheck: {missing}"


def test_every_build_context_has_a_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    built = {name: build_context(s) for name, s in services.items() if build_context(s) is not None}
    assert set(OUR_SERVICES) <= set(built), "our services are built from this repository"
    for name, ctx in built.items():
        assert ctx is not None
        context, dockerfile = ctx
        assert (context / dockerfile).is_file(), f"{name}: no {dockerfile} in {context}"


def test_commands_are_real_planexe_ax_subcommands(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if build_context(service) is not None:
            assert command_of(service) in PLANEXE_COMMANDS, f"{name} runs {command_of(service)!r}"
    assert {command_of(services[name]) for name in OUR_SERVICES} == set(PLANEXE_COMMANDS)


def test_nats_runs_jetstream_with_a_store_and_monitoring(services: dict[str, dict[str, Any]]) -> None:
    args = command_of(services["nats"]).split()
    assert "-js" in args
    assert args[args.index("-sd") + 1] == "/data"
    assert "-m" in args
    monitor_port = args[args.index("-m") + 1]
    assert f":{monitor_port}/healthz" in " ".join(services["nats"]["healthcheck"]["test"])
    # The scratch-based nats image has no shell or wget; the healthcheck needs the alpine variant.
    assert services["nats"]["image"].startswith("nats:2.10")
    assert "alpine" in services["nats"]["image"]


def test_required_variables_fail_loudly_when_unset() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    variables = VARIABLE.findall(text)
    assert variables, "compose must take the database password from the environment"
    for expression in variables:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*:\?.+", expression), f"${{{expression}}} must be ${{VAR:?message}}"
    assert "POSTGRES_PASSWORD:?Variable not set" in variables


def test_no_secret_is_written_in_the_file(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key or "DATABASE_URL" in key:
                assert "${" in str(value), f"{name}.{key} must come from the environment"


def test_our_services_wait_for_healthy_dependencies(services: dict[str, dict[str, Any]]) -> None:
    for name in OUR_SERVICES:
        depends = services[name]["depends_on"]
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions, not a list"
        assert set(depends) == ({"nats", "postgres"} if name in ON_POSTGRES else {"nats"})
        for dependency, spec in depends.items():
            assert spec == {"condition": "service_healthy"}, f"{name} -> {dependency}"
            assert "healthcheck" in services[dependency]


def test_our_services_talk_to_the_compose_nats_and_postgres(services: dict[str, dict[str, Any]]) -> None:
    for name in OUR_SERVICES:
        env = services[name]["environment"]
        assert env["PLANEXE_NATS_URL"] == "nats://nats:4222"
        if name not in ON_POSTGRES:
            continue
        assert env["PLANEXE_DATABASE_URL"].startswith("postgresql+asyncpg://postgres:${POSTGRES_PASSWORD:?")
        assert env["PLANEXE_DATABASE_URL"].endswith("@postgres:5432/planexe")
    assert services["postgres"]["environment"]["POSTGRES_DB"] == "planexe"


def test_postgres_healthcheck_uses_pg_isready(services: dict[str, dict[str, Any]]) -> None:
    assert services["postgres"]["image"] == "postgres:15"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]


# ---------------------------------------------------------------------------------------------- Dockerfile
def test_dockerfile_installs_the_package_and_runs_as_a_user() -> None:
    instructions = dockerfile_instructions()
    kinds = [kind for kind, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert any(kind == "RUN" and "pip install ." in arg for kind, arg in instructions)
    users = [arg for kind, arg in instructions if kind == "USER"]
    assert users, "the image must not run as root"
    assert users[-1] not in ("root", "0")
    assert kinds.index("USER") < kinds.index("ENTRYPOINT")


def test_dockerfile_entrypoint_is_the_project_script() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    entrypoints = [arg for kind, arg in dockerfile_instructions() if kind == "ENTRYPOINT"]
    assert entrypoints == ['["planexe-ax"]']
    assert "planexe-ax" in scripts


def test_dockerfile_copies_only_what_exists_and_dockerignore_keeps_the_context_small() -> None:
    # pyproject.toml names the README, so `pip install .` needs it even before it is written.
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["readme"]
    copied = set()
    for kind, arg in dockerfile_instructions():
        if kind == "COPY":
            *sources, _ = arg.split()
            copied.update(sources)
            for source in sources:
                assert (ROOT / source).exists() or source == readme, f"COPY {source}: no such path"
    assert {"pyproject.toml", readme, "src"} <= copied
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv*", "tests"} <= set(ignored)


def test_helpers_see_through_the_formats() -> None:
    """The parsing helpers above must not make every check pass vacuously."""
    assert command_of({"command": "serve  'coordinator'"}) == "serve coordinator"
    assert command_of({"command": ["serve", "agents"]}) == "serve agents"
    assert build_context({"build": {"context": "sub", "dockerfile": "X"}}) == (ROOT / "sub", "X")
    assert build_context({"image": "nats"}) is None
    assert not re.fullmatch(r"[A-Z][A-Z0-9_]*:\?.+", "POSTGRES_PASSWORD:-postgres")


def test_the_gateway_is_published_and_probed_on_its_health_endpoint(services: dict[str, dict[str, Any]]) -> None:
    gateway = services["gateway"]
    env = gateway["environment"]
    port = str(env["PLANEXE_HTTP_PORT"])
    assert env["PLANEXE_HTTP_HOST"] == "0.0.0.0", "inside a container the gateway must listen on every interface"
    assert f"{port}:{port}" in gateway["ports"]
    probe = " ".join(gateway["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/healthz" in probe


# ---------------------------------------------------------------------------------------------- NATS identities
def test_nats_runs_in_operator_mode_with_the_config_auth_init_writes(services: dict[str, dict[str, Any]]) -> None:
    args = command_of(services["nats"]).split()
    config = args[args.index("-c") + 1]
    assert f"./nats-auth/nats-server.conf:{config}:ro" in services["nats"]["volumes"]


def test_each_service_connects_with_its_own_identity_and_no_other(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    assert set(ROLE_OF) == set(OUR_SERVICES)
    assert set(ROLE_OF.values()) <= set(SERVICE_ROLES)
    given = {}
    for name in OUR_SERVICES:
        role = ROLE_OF[name]
        extra = ["audit-key"] if role == "coordinator" else []  # the key that signs audit checkpoints
        assert services[name]["secrets"] == [f"{role}-creds", *extra], f"{name} must get only its own .creds"
        assert services[name]["environment"]["PLANEXE_NATS_CREDS"] == f"/run/secrets/{role}-creds"
        given[f"{role}-creds"] = compose["secrets"][f"{role}-creds"]["file"]
    assert given == {f"{ROLE_OF[n]}-creds": f"./nats-auth/users/{ROLE_OF[n]}.creds" for n in OUR_SERVICES}
    assert compose["secrets"]["audit-key"]["file"] == "./nats-auth/audit.nk"
    assert "admin-creds" not in compose["secrets"], "no service runs with every right"


# ---------------------------------------------------------------------------------------------- tracing
def test_jaeger_takes_otlp_and_shows_its_ui(services: dict[str, dict[str, Any]]) -> None:
    jaeger = services["jaeger"]
    assert jaeger["image"].startswith("jaegertracing/all-in-one:")
    assert {"16686:16686", "4317:4317", "4318:4318"} <= set(jaeger["ports"])
    assert str(jaeger["environment"]["COLLECTOR_OTLP_ENABLED"]) == "true"


def test_every_service_exports_its_spans_to_jaeger_under_its_own_name(services: dict[str, dict[str, Any]]) -> None:
    for name in OUR_SERVICES:
        env = services[name]["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318", name  # OTLP over HTTP
        assert env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") == "http/protobuf", name
        assert "OTEL_SERVICE_NAME" not in env, f"{name} names itself planexe-ax-{name}"
        assert "OTEL_TRACES_EXPORTER" not in env or env["OTEL_TRACES_EXPORTER"] == "otlp", name


def test_the_dashboard_links_to_the_jaeger_ui(services: dict[str, dict[str, Any]]) -> None:
    assert services["gateway"]["environment"]["PLANEXE_TRACE_URL"] == "http://localhost:16686/trace/{trace_id}"


# ---------------------------------------------------------------------------------------------- profile cluster
NODES = ("nats-1", "nats-2", "nats-3")
SINGLE_IN_A_CLUSTER: dict[str, int] = {}
"""Services the cluster runs once, until they have a standby (none now: the webhook service has a lease)."""


def flag(args: list[str], name: str) -> str:
    assert name in args, f"missing {name} in {args}"
    return args[args.index(name) + 1]


def test_the_one_node_stack_has_no_profile(services: dict[str, dict[str, Any]]) -> None:
    for name in ("nats", "postgres", "jaeger", *OUR_SERVICES):
        assert "profiles" not in services[name], f"{name} must start with a plain `docker compose up`"


def test_the_cluster_profile_runs_three_routed_jetstream_nodes(services: dict[str, dict[str, Any]]) -> None:
    names: set[str] = set()
    stores: set[str] = set()
    for node in NODES:
        service = services[node]
        assert service["profiles"] == ["cluster"]
        args = command_of(service).split()
        assert "-js" in args
        assert flag(args, "-c") == command_of(services["nats"]).split()[1], "the same operator-mode config"
        names.add(flag(args, "--name"))
        assert flag(args, "--cluster_name") == "planexe"
        route_port = flag(args, "--cluster").rsplit(":", 1)[1]
        assert sorted(flag(args, "--routes").split(",")) == [f"nats://{n}:{route_port}" for n in NODES]
        stores.update(v for v in service["volumes"] if v.endswith(f":{flag(args, '-sd')}"))
        assert f":{flag(args, '-m')}/healthz" in " ".join(service["healthcheck"]["test"])
        assert service["image"] == services["nats"]["image"]
    assert names == set(NODES), "each node has its own server name"
    assert len(stores) == len(NODES), "each node has its own JetStream store"


def test_the_cluster_profile_runs_two_of_each_service_on_every_node(services: dict[str, dict[str, Any]]) -> None:
    urls = ",".join(f"nats://{node}:4222" for node in NODES)
    for name in OUR_SERVICES:
        single, clustered = services[name], services[f"{name}-cluster"]
        assert clustered["profiles"] == ["cluster"]
        assert clustered["deploy"]["replicas"] == SINGLE_IN_A_CLUSTER.get(name, 2)
        assert command_of(clustered) == command_of(single)
        assert clustered["secrets"] == single["secrets"], f"{name}-cluster connects as {name} does"
        env = clustered["environment"]
        assert env["PLANEXE_NATS_URL"] == urls, "every node, so that a client moves to another when one goes"
        assert 1 < int(env["PLANEXE_REPLICAS"]) <= len(NODES)
        assert env["PLANEXE_NATS_CREDS"] == single["environment"]["PLANEXE_NATS_CREDS"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == single["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
        expected = {*NODES, "postgres"} if name in ON_POSTGRES else set(NODES)
        assert set(clustered["depends_on"]) == expected, name
        assert all(spec == {"condition": "service_healthy"} for spec in clustered["depends_on"].values())
        if name in ON_POSTGRES:
            assert env["PLANEXE_DATABASE_URL"] == single["environment"]["PLANEXE_DATABASE_URL"]
        assert clustered.get("healthcheck", {}).get("test"), name
    low, high = services["gateway-cluster"]["ports"][0].split(":")[0].split("-")
    assert int(high) - int(low) + 1 == services["gateway-cluster"]["deploy"]["replicas"], "a host port per gateway"


def test_the_documented_cluster_command_names_every_cluster_service(services: dict[str, dict[str, Any]]) -> None:
    clustered = {name for name, service in services.items() if "cluster" in service.get("profiles", [])}
    for text in (COMPOSE.read_text(encoding="utf-8"), (ROOT / "README.md").read_text(encoding="utf-8")):
        lines = text[text.index("docker compose --profile cluster up") :].splitlines()
        ends = next(i for i, line in enumerate(lines) if not line.rstrip().endswith("\\"))
        command = " ".join(lines[: ends + 1]).replace("#", " ").replace("\\", " ").split()
        assert clustered <= set(command), sorted(clustered - set(command))
        assert not {"nats", *OUR_SERVICES} & set(command), "the one-node services stay out"
