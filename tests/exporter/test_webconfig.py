"""Protected endpoints: TLS, client certificates and bcrypt basic auth, with real certificates."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest
import trustme
from prometheus_client import CollectorRegistry

from monitor.config_errors import ConfigError
from monitor.exporter.server import HttpServer, make_app
from monitor.exporter.webconfig import load_web_config, protect
from tests.daemon_process import run_once

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def files(tmp_path: Path, ca: trustme.CA) -> Path:
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    client = ca.issue_cert("prometheus@example.com")
    client.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client.pem"))
    return tmp_path


def write(directory: Path, text: str) -> Path:
    path = directory / "web.yml"
    path.write_text(text)
    return path


def serve(config_path: Path) -> Iterator[str]:
    config = load_web_config(config_path)
    app = protect(make_app(CollectorRegistry(), lambda: True), config)
    server = HttpServer("127.0.0.1", 0, app, ssl_context=config.ssl_context)
    server.start()
    try:
        scheme = "https" if config.ssl_context else "http"
        yield f"{scheme}://127.0.0.1:{server.port}"
    finally:
        server.stop()


def status_of(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=3).status_code
    except httpx.HTTPError:
        return None


def hashed() -> str:
    return (
        bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$")
    )


def test_tls_and_basic_auth(files: Path) -> None:
    path = write(
        files,
        f"""
tls_server_config:
  cert_file: server.crt
  key_file: server.key
basic_auth_users:
  prometheus: {hashed()}
http_server_config:
  headers:
    X-Content-Type-Options: nosniff
""",
    )
    for url in serve(path):
        ca_file = ssl.create_default_context(cafile=str(files / "ca.crt"))
        good = httpx.get(url + "/metrics", verify=ca_file, auth=("prometheus", PASSWORD))
        assert good.status_code == 200
        assert good.headers["x-content-type-options"] == "nosniff"
        assert (
            httpx.get(url + "/metrics", verify=ca_file, auth=("prometheus", PASSWORD)).status_code
            == 200
        )
        wrong = httpx.get(url + "/metrics", verify=ca_file, auth=("prometheus", "guess"))
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"].startswith("Basic")
        assert (
            httpx.get(url + "/metrics", verify=ca_file, auth=("nobody", PASSWORD)).status_code
            == 401
        )
        assert httpx.get(url + "/metrics", verify=ca_file).status_code == 401
        assert httpx.get(url + "/", verify=ca_file).status_code == 401
        # the probes answer without credentials (a readinessProbe cannot send them)
        assert httpx.get(url + "/readyz", verify=ca_file).status_code == 200
        assert httpx.get(url + "/healthz", verify=ca_file).status_code == 200
        plain = url.replace("https://", "http://")
        assert status_of(plain + "/healthz") is None  # plain HTTP gets no answer at all


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_tls_1_1_is_refused(files: Path) -> None:
    path = write(files, "tls_server_config: {cert_file: server.crt, key_file: server.key}\n")
    for url in serve(path):
        old = ssl.create_default_context(cafile=str(files / "ca.crt"))
        old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/healthz", verify=old)


def test_client_certificates(files: Path) -> None:
    path = write(
        files,
        """
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
""",
    )
    for url in serve(path):
        with_cert = ssl.create_default_context(cafile=str(files / "ca.crt"))
        with_cert.load_cert_chain(str(files / "client.pem"))
        assert httpx.get(url + "/metrics", verify=with_cert).status_code == 200
        without = ssl.create_default_context(cafile=str(files / "ca.crt"))
        with pytest.raises(httpx.HTTPError):
            httpx.get(url + "/metrics", verify=without)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "tls_server_config: {cert_file: missing.crt, key_file: missing.key}\n",
            r"tls_server_config\.cert_file \S*missing\.crt: No such file",
        ),
        (
            "tls_server_config: {cert_file: server.crt, key_file: missing.key}\n",
            r"tls_server_config\.key_file \S*missing\.key: No such file",
        ),
        (  # a file that is there but is not what it should be is named too
            "tls_server_config: {cert_file: server.crt, key_file: ca.crt}\n",
            r"cert_file \S*server\.crt and key_file \S*ca\.crt are not a certificate and its "
            r"private key",
        ),
        ("basic_auth_users: {alice: plaintext}\n", "not a bcrypt hash"),
        ("tls_server_config: {cert_file: server.crt}\n", "key_file"),
        (
            "tls_server_config: {cert_file: server.crt, key_file: server.key, "
            "client_auth_type: RequireAndVerifyClientCert}\n",
            "needs client_ca_file",
        ),
        ("unknown_section: {}\n", "unknown key"),
        ("tls_server_config: [\n", r"cannot read web config \S+, line 2, column 1: YAML syntax"),
    ],
)
def test_bad_files_are_clear_errors(files: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_web_config(write(files, text))


def test_bad_web_config_exits_2_with_the_reason(files: Path) -> None:
    path = write(files, "basic_auth_users: {alice: plaintext}\n")
    env = {"SENDCLOUD_PUBLIC_KEY": "p", "SENDCLOUD_SECRET_KEY": "s"}
    result = run_once(["run", "--web.config.file", str(path)], env)
    assert result.returncode == 2
    assert "not a bcrypt hash" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(60)
def test_the_daemon_serves_tls_and_basic_auth_end_to_end(files: Path, sim: object) -> None:
    from monitor.simulator import Simulator
    from tests.conftest import free_port
    from tests.daemon_process import DaemonProcess

    assert isinstance(sim, Simulator)
    path = write(
        files,
        f"""
tls_server_config: {{cert_file: server.crt, key_file: server.key}}
basic_auth_users: {{prometheus: {hashed()}}}
""",
    )
    port = free_port()
    env = {
        "SENDCLOUD_API_URL": sim.url,
        "SENDCLOUD_PUBLIC_KEY": "demo-public-key",
        "SENDCLOUD_SECRET_KEY": "demo-secret-key",
        "MONITOR_LISTEN_ADDRESS": f"127.0.0.1:{port}",
        "MONITOR_WEB_CONFIG_FILE": str(path),
    }
    daemon = DaemonProcess(["run"], env, port)
    base = f"https://127.0.0.1:{port}"
    trust = ssl.create_default_context(cafile=str(files / "ca.crt"))
    try:
        daemon.wait_for(
            lambda: httpx.get(base + "/healthz", verify=trust).status_code == 200, 20, "/healthz"
        )
        daemon.wait_for(
            lambda: (
                "integration_up"
                in httpx.get(base + "/metrics", verify=trust, auth=("prometheus", PASSWORD)).text
            ),
            20,
            "metrics over TLS with basic auth",
        )
        assert httpx.get(base + "/metrics", verify=trust).status_code == 401
        assert status_of(f"http://127.0.0.1:{port}/metrics") is None
        code, _ = daemon.terminate()
    finally:
        daemon.kill()
    assert code == 0
    assert PASSWORD not in daemon.output


def test_a_yaml_syntax_error_names_the_line_never_its_text(files: Path) -> None:
    """PyYAML quotes the offending line: here a password hash, never to be printed."""
    hashed = "$2b$10$abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXY"
    path = write(files, f"basic_auth_users:\n  alice: {hashed}: extra\n")
    with pytest.raises(ConfigError) as raised:
        load_web_config(path)
    message = str(raised.value)
    assert message.startswith(f"cannot read web config {path}, line 2, column ")
    assert "YAML syntax error: mapping values are not allowed here" in message
    assert hashed not in message
    assert "alice" not in message
