"""The container image, built and run as a user would: ``podman build`` of the project's
Dockerfile on a base made from Debian's packages (no registry is needed), then the running
container is checked for what the deploy bundle relies on.

Run alone: ``.venv/bin/pytest tests/system/test_image.py`` (about two minutes on a fresh machine,
well under one once the base image is cached).

Traps on these machines, each handled below (see docs/CONTRIBUTING.md):
- crun refuses hybrid cgroups and podman's default open-files limit exceeds the hard limit: an
  own ``containers.conf`` (``CONTAINERS_CONF``) with runc and explicit ulimits;
- pip inside the build must trust the CA certificates the host trusts: the base image gets the
  certificates of the host's local CA folder;
- healthchecks do not run on their own without systemd: the test runs ``podman healthcheck run``;
- ``--format docker`` keeps the HEALTHCHECK; ``--no-cache`` avoids buildah 1.28's layer-cache
  bugs with multi-stage builds.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, free_port, require_binary

#: What the base image is made of; its hash names the cached image.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
SUITE = "bookworm"
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
IMAGE = "localhost/sendcloud-integration-monitor:test"
STATE_DIR = "/var/lib/integration-monitor"
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


class Podman:
    def __init__(self, binary: str, conf: Path) -> None:
        self.binary = binary
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def __call__(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        result = subprocess.run(
            [self.binary, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {result.stderr}")
        return result.stdout.strip()

    def returncode(self, *args: str) -> int:
        return subprocess.run(
            [self.binary, *args], env=self.env, capture_output=True, timeout=60, check=False
        ).returncode


def host_certificates() -> list[Path]:
    return sorted(HOST_CA_DIR.glob("*.crt")) if HOST_CA_DIR.is_dir() else []


def apt_sources() -> bytes:
    paths = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    return b"".join(p.read_bytes() for p in paths if p.is_file())


def base_image(podman: Podman, workdir: Path) -> str:
    """A Debian base with Python, made by mmdebstrap from the machine's own apt sources, cached
    in podman's storage under a hash of everything that goes into it."""
    mmdebstrap = require_binary("mmdebstrap")
    digest = hashlib.sha256()
    for part in (SUITE, *BASE_PACKAGES):
        digest.update(part.encode() + b"\0")
    digest.update(apt_sources())
    for certificate in host_certificates():
        digest.update(certificate.read_bytes())
    name = f"localhost/integration-monitor-base:{digest.hexdigest()[:16]}"
    if podman.returncode("image", "exists", name) == 0:
        return name
    tarball = workdir / "base.tar"
    hooks = ['mkdir -p "$1/usr/local/share/ca-certificates"']
    certificates = host_certificates()
    if certificates:
        paths = " ".join(str(c) for c in certificates)
        hooks.append(f"copy-in {paths} /usr/local/share/ca-certificates/")
    hooks += [
        'chroot "$1" update-ca-certificates',
        'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
    ]
    subprocess.run(
        [
            mmdebstrap,
            "--quiet",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            *(f"--customize-hook={hook}" for hook in hooks),
            SUITE,
            str(tarball),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    podman("import", str(tarball), name)
    tarball.unlink()
    return name


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    binary = require_binary("podman")
    workdir = tmp_path_factory.mktemp("image")
    conf = workdir / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    tool = Podman(binary, conf)
    base = base_image(tool, workdir)
    tool(
        "build",
        "--quiet",
        "--format=docker",
        "--no-cache",
        "--network=host",
        f"--build-arg=BASE={base}",
        f"--tag={IMAGE}",
        str(ROOT),
        timeout=600,
    )
    return tool


class Container:
    def __init__(self, podman: Podman, cid: str, port: int) -> None:
        self.podman, self.id, self.port = podman, cid, port

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"not ready:\n{self.logs()}")

    def logs(self) -> str:
        return self.podman("logs", self.id, check=False)

    def events(self, name: str) -> list[dict[str, object]]:
        found = []
        for line in self.logs().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == name:
                found.append(entry)
        return found


def run_demo(podman: Podman, volume: str, *extra: str) -> Container:
    """The demo as the Kubernetes manifest and the compose file run the daemon: read-only root
    filesystem — without podman's default tmpfs on /tmp, /var/tmp and /run, which compose's
    ``read_only: true`` does not add either — only the state directory writable, all
    capabilities dropped, the address from the image's MONITOR_LISTEN_ADDRESS."""
    port = free_port()
    cid = podman(
        "run",
        "--detach",
        "--read-only",
        "--read-only-tmpfs=false",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        f"--volume={volume}:{STATE_DIR}",
        f"--publish=127.0.0.1:{port}:9877",
        *extra,
        IMAGE,
        "demo",
        "--interval",
        "5",
    )
    return Container(podman, cid, port)


@pytest.fixture
def volume(podman: Podman) -> Iterator[str]:
    """A named volume for the state directory; the containers that used it go with it."""
    name = f"integration-monitor-test-{os.getpid()}-{time.monotonic_ns()}"
    podman("volume", "create", name)
    yield name
    users = podman("ps", "--all", "--quiet", f"--filter=volume={name}", check=False).split()
    if users:
        podman("rm", "--force", *users, check=False)
    podman("volume", "rm", "--force", name, check=False)


def test_the_demo_answers_from_the_host_as_a_non_root_user_on_a_read_only_root(
    podman: Podman, volume: str
) -> None:
    container = run_demo(podman, volume)
    container.wait_ready()
    families = {f.name: f for f in text_string_to_metric_families(container.get("/metrics").text)}
    up = {s.labels["integration_id"] for s in families["integration_up"].samples}
    assert len(up) >= 5  # the demo's integrations, healthy, failing, stale and gone
    assert sum(s.value for s in families["integration_failing"].samples) >= 1
    assert podman("exec", container.id, "id", "-u") == "10001"
    assert podman("exec", container.id, "id", "-g") == "10001"
    assert podman.returncode("exec", container.id, "touch", "/opt/venv/x") != 0  # read-only
    for scratch in ("/tmp", "/var/tmp"):  # no tmpfs: the demo needs no temporary directory
        assert podman.returncode("exec", container.id, "touch", f"{scratch}/x") != 0, scratch
    assert podman.returncode("exec", container.id, "touch", f"{STATE_DIR}/probe") == 0
    [started] = container.events("demo_started")
    assert started["history_file"] == f"{STATE_DIR}/history.db"  # all in the state directory
    # the final stage carries no compilers, no pip and no sources
    for tool in ("gcc", "cc", "make", "pip", "pip3"):
        assert podman.returncode("exec", container.id, "sh", "-c", f"command -v {tool}") != 0
    size = int(podman("image", "inspect", IMAGE, "--format", "{{.Size}}"))
    print(f"image size: {size / 2**20:.0f} MiB")  # reported with -s


def test_the_healthcheck_passes_when_the_daemon_is_up_and_fails_when_it_is_not(
    podman: Podman, volume: str
) -> None:
    container = run_demo(podman, volume)
    container.wait_ready()
    assert podman.returncode("healthcheck", "run", container.id) == 0
    idle = podman(
        "run", "--detach", "--read-only", "--entrypoint", "sleep", IMAGE, "60"
    )  # the image, without the daemon
    try:
        assert podman.returncode("healthcheck", "run", idle) != 0
    finally:
        podman("rm", "--force", idle, check=False)


def test_sigterm_stops_it_cleanly_and_the_state_survives_the_next_run(
    podman: Podman, volume: str
) -> None:
    first = run_demo(podman, volume)
    first.wait_ready()
    deadline = time.monotonic() + 30
    while not first.events("alert") and time.monotonic() < deadline:
        time.sleep(0.5)
    open_alerts = set()
    for event in first.events("alert"):
        if event["kind"] == "fired":
            open_alerts.add(event["fingerprint"])
        elif event["kind"] == "resolved":
            open_alerts.discard(event["fingerprint"])
    assert open_alerts, "the demo has no open alert"
    started = time.monotonic()
    podman("stop", "--time=10", first.id)
    assert time.monotonic() - started < 5
    assert podman("inspect", first.id, "--format", "{{.State.ExitCode}}") == "0"
    assert first.events("monitor_stopped")
    second = run_demo(podman, volume)
    second.wait_ready()
    [restored] = second.events("alert_state_restored")
    assert restored["path"] == f"{STATE_DIR}/alerts.json"
    assert isinstance(restored["alerts"], int)
    assert restored["alerts"] >= len(open_alerts)  # every open alert came back from the volume
