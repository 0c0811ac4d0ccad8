"""deploy/kubernetes checked statically (no cluster runs here): every manifest
the kustomization lists exists and validates, strictly, against the Kubernetes
API schemas that kubernetes-validate ships (the versions in K8S_VERSIONS);
the CloudNativePG Cluster against its CRD's openAPIV3Schema (vendored, with
unknown fields refused as a strict apply does); nats-values.yaml sets only keys
the NATS chart has (it ships no values schema). And against the code: every
CAIRN_* variable set is one the code reads, every probe and port is the
service's default port, the commands are ones `cairn --help` lists, every
Secret and ConfigMap a pod reads is one the kustomization makes (or, for the
database URL, the one CloudNativePG makes for the Cluster)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import (
    KUBERNETES,
    SCHEMAS,
    cairn_commands,
    default_http_port,
    default_port,
    host_of,
    load_all,
    module,
    port_of,
    variables_read,
)

# The oldest and newest Kubernetes versions CloudNativePG 1.30 supports.
K8S_VERSIONS = ("1.34.0", "1.36.0")
SERVICES = ("frontend", "history", "matching")
NOT_MANIFESTS = {"kustomization.yaml", "nats-values.yaml"}


def _kustomization() -> dict[str, Any]:
    (doc,) = load_all(KUBERNETES / "kustomization.yaml")
    return doc


def _resources() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (KUBERNETES / name, doc)
        for name in _kustomization()["resources"]
        for doc in load_all(KUBERNETES / name)
    ]


def _of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in _resources() if doc["kind"] == kind}


def _pod_specs() -> dict[str, dict[str, Any]]:
    """The pod spec of every Deployment and Job, by its name."""
    return {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]
        for _, doc in _resources()
        if doc["kind"] in ("Deployment", "Job")
    }


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _service_container(name: str) -> dict[str, Any]:
    (container,) = _of_kind("Deployment")[name]["spec"]["template"]["spec"]["containers"]
    return container


def test_kustomization_lists_files_that_exist_and_every_manifest() -> None:
    listed = _kustomization()["resources"]
    for name in listed:
        assert (KUBERNETES / name).is_file(), f"kustomization.yaml lists {name}, which does not exist"
    on_disk = {p.name for p in KUBERNETES.glob("*.yaml")} - NOT_MANIFESTS
    assert on_disk == set(listed), f"not in kustomization.yaml: {on_disk - set(listed)}"
    assert _kustomization()["namespace"] == next(iter(_of_kind("Namespace")))


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_match_the_kubernetes_api(version: str) -> None:
    kv = module("kubernetes_validate", "kubernetes-validate")
    if version not in kv.utils.all_versions():
        pytest.fail(f"kubernetes-validate has no schemas for Kubernetes {version}; update K8S_VERSIONS")
    checked = 0
    for path, doc in _resources():
        if doc["apiVersion"].startswith("postgresql.cnpg.io/"):
            continue  # a custom resource: test_postgres_cluster_matches_the_cnpg_crd
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            pytest.fail(f"{path.name} {doc['kind']}/{doc['metadata']['name']}: {exc.message}")
        checked += 1
    assert checked >= 10


def _strict(schema: Any) -> Any:
    """The CRD schema refusing unknown fields, as `kubectl apply` with strict
    field validation does (the API server prunes them otherwise)."""
    if isinstance(schema, dict):
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        for value in schema.values():
            _strict(value)
    elif isinstance(schema, list):
        for value in schema:
            _strict(value)
    return schema


def test_postgres_cluster_matches_the_cnpg_crd() -> None:
    jsonschema = module("jsonschema", "jsonschema (with check-jsonschema)")
    (crd,) = load_all(SCHEMAS / "postgresql.cnpg.io_clusters.yaml")
    clusters = [doc for _, doc in _resources() if doc["kind"] == "Cluster"]
    assert len(clusters) == 1
    (cluster,) = clusters
    group, _, version = cluster["apiVersion"].partition("/")
    assert group == crd["spec"]["group"]
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = _strict(copy.deepcopy(served["schema"]["openAPIV3Schema"]))
    errors = [
        f"{'.'.join(map(str, e.path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(cluster)
    ]
    assert not errors, errors
    assert cluster["spec"]["instances"] == 3
    wrong = copy.deepcopy(cluster)
    wrong["spec"]["instancess"] = 3
    assert list(jsonschema.Draft7Validator(schema).iter_errors(wrong)), "the strict schema refuses a typo"


def _unknown_keys(ours: Any, chart: Any, path: str) -> list[str]:
    """Keys of ours that the chart's defaults do not have; below an empty map or
    a null default (merge, patch, env, resources, ...) anything goes."""
    if not isinstance(ours, dict):
        return []
    if not isinstance(chart, dict):
        return [] if chart is None else [f"{path}: a map where the chart has {chart!r}"]
    if not chart:
        return []
    out = []
    for key, value in ours.items():
        if key not in chart:
            out.append(f"{path}.{key}")
        else:
            out += _unknown_keys(value, chart[key], f"{path}.{key}")
    return out


def test_nats_values_set_keys_the_chart_has() -> None:
    (values,) = load_all(KUBERNETES / "nats-values.yaml")
    (chart,) = load_all(SCHEMAS / "nats-chart-values.yaml")
    assert _unknown_keys(values, chart, "") == []
    assert values["config"]["jetstream"]["enabled"] is True
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}


def test_nats_url_is_the_charts_service() -> None:
    """Installed as release `nats`, the chart's Service is `nats` on config.nats.port."""
    (chart,) = load_all(SCHEMAS / "nats-chart-values.yaml")
    url = _of_kind("ConfigMap")["cairn-config"]["data"]["CAIRN_NATS_URL"]
    assert url == f"nats://nats:{chart['config']['nats']['port']}"


def test_services_have_two_replicas_probes_resources_and_a_budget() -> None:
    budgets = {
        doc["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for doc in _of_kind("PodDisruptionBudget").values()
    }
    for name in SERVICES:
        deployment = _of_kind("Deployment")[name]
        assert deployment["spec"]["replicas"] == 2, name
        container = _service_container(name)
        port = default_port(name)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == port, f"{name} {probe}"
        assert port_of(_env(container)["CAIRN_LISTEN"]["value"]) == port
        assert name in budgets, f"no PodDisruptionBudget for {name}"
    for pod_name, pod in _pod_specs().items():
        for container in pod["containers"]:
            resources = container["resources"]
            assert resources["requests"] and resources["limits"]["memory"], f"{pod_name}: requests and limits"
            # The `restricted` Pod Security Standard (namespace.yaml audits it).
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, pod_name
            assert security["capabilities"]["drop"] == ["ALL"], pod_name
        assert pod["securityContext"]["runAsNonRoot"] is True, pod_name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", pod_name


def test_ports_and_services_are_the_defaults() -> None:
    services = _of_kind("Service")
    for name in SERVICES:
        container = _service_container(name)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["grpc"] == default_port(name)
        for port in services[name]["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service {name} targets {port['targetPort']}"
            assert port["port"] == ports[port["targetPort"]]
        annotations = _of_kind("Deployment")[name]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        metrics_port = int(annotations["prometheus.io/port"])
        env = _env(container)
        if name == "frontend":
            assert ports["http"] == default_http_port() == port_of(env["CAIRN_HTTP_ADDRESS"]["value"])
            assert metrics_port == ports["http"]  # the frontend's /metrics is on its HTTP port
        else:
            assert metrics_port == ports["metrics"] == port_of(env["CAIRN_METRICS_ADDRESS"]["value"])
            assert services[name]["spec"]["clusterIP"] == "None", "headless: gRPC balances over the pods"
    config = _of_kind("ConfigMap")["cairn-config"]["data"]
    for variable, target in (("CAIRN_HISTORY_ADDRESS", "history"), ("CAIRN_MATCHING_ADDRESS", "matching")):
        assert host_of(config[variable]) == target and port_of(config[variable]) == default_port(target)
    worker_address = _env(_service_container("worker-orders"))["CAIRN_ADDRESS"]["value"]
    assert host_of(worker_address) == "frontend" and port_of(worker_address) == default_port("frontend")


def test_containers_run_cairn_commands_of_the_image() -> None:
    images = {image["name"] for image in _kustomization()["images"]}
    for name, pod in _pod_specs().items():
        for container in pod["containers"]:
            assert container["image"] in images, f"{name}: the kustomization does not set its image"
            assert container["args"][0] in cairn_commands(), f"{name}: {container['args']}"


def test_only_variables_the_code_reads() -> None:
    read = variables_read()
    config = _of_kind("ConfigMap")
    secrets = _of_kind("Secret")
    for data in [c["data"] for c in config.values()] + [s["stringData"] for s in secrets.values()]:
        for variable in data:
            assert variable in read, f"{variable} is set, but no code reads it"
    for name, pod in _pod_specs().items():
        for container in pod["containers"]:
            for variable in _env(container):
                assert variable in read, f"{name} sets {variable}, which no code reads"


def test_secrets_and_config_maps_read_are_made_here() -> None:
    config = _of_kind("ConfigMap")
    secrets = {name: doc["stringData"] for name, doc in _of_kind("Secret").items()}
    (cluster,) = _of_kind("Cluster")
    secrets[f"{cluster}-app"] = {"uri": "made by CloudNativePG for the Cluster's owner"}
    assert _of_kind("Cluster")[cluster]["spec"]["bootstrap"]["initdb"]["database"] == "cairn"
    for name, pod in _pod_specs().items():
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config, name
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    secret = ref["secretKeyRef"]
                    assert secret["key"] in secrets.get(secret["name"], {}), f"{name}: {secret}"
                if "configMapKeyRef" in ref:
                    key = ref["configMapKeyRef"]
                    assert key["key"] in config[key["name"]]["data"], f"{name}: {key}"


def test_every_service_gets_the_internal_credential_and_only_matching_the_admin_key() -> None:
    for name in SERVICES:
        env = _env(_service_container(name))
        assert "CAIRN_INTERNAL_CREDENTIAL" in env, name
        assert ("CAIRN_ADMIN_KEY" in env) == (name == "matching"), name
        if name != "frontend":
            assert env["CAIRN_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "uri"


def test_placeholder_secrets_are_refused_at_start() -> None:
    """Applied unchanged, the Secret's placeholders stop the services at start
    instead of running with a published credential."""
    from cairn import keys
    from services.common.internal_auth import check_credential

    data = _of_kind("Secret")["cairn-secrets"]["stringData"]
    assert check_credential(data["CAIRN_INTERNAL_CREDENTIAL"]) is not None
    assert keys.split(data["CAIRN_ADMIN_KEY"]) is None
    assert keys.split(_of_kind("Secret")["cairn-worker-key"]["stringData"]["CAIRN_API_KEY"]) is None
