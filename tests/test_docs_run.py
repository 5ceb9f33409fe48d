"""The docs run: every command shown in README.md and docs/*.md, and every snippet they show.

Each ``sh`` and ``console`` block is run as a reader would type it, in a context of its own:

- one Sendcloud simulator (the demo's shops) stands in for Sendcloud, and a real HTTP server
  on loopback for every receiver a snippet names;
- the environment of a reader's shell: what the block ``export``-s in the lines above (a block
  stands on its own: readers copy one, and the blocks of a page are often alternatives), the
  listen address on a free port, the state directory (``MONITOR_STATE_FILE``), and a
  configuration file (``MONITOR_CONFIG_FILE``) made of the page's own settings snippets above
  the block, with one account (``acme-nl``, the account the examples name) pointed at the
  simulator;
- the docs' fixed ports (8080, 9877) become free ports, their absolute paths (``/run/secrets``,
  ``/var/lib/integration-monitor``, ``/backups``) directories of the block, and its
  placeholders (``...`` for a key, ``ID`` or a documented mute ID) what the reader would have:
  the simulator's keys, the mute just made;
- a command that needs the history (``mute``, ``report``, ``history.db``) runs beside a running
  daemon, as the docs describe; a long-running command (``run``, ``demo``, ``simulator``, a
  line ending in ``&``) runs until it is ready and is stopped with SIGTERM when the block ends
  (exit code 0 expected).

Every command's exit code is checked (what its comment says, ``# exit code N``; else 0, or
what EXPECTED_EXIT says and why), and the output a ``console`` block shows is compared with
what the command printed. ``make TARGET`` is run as a dry run (the target exists) and the
``integration-monitor`` commands of its recipe are run.
Commands that cannot run here are listed in NOT_RUN, each with its reason; any other program
fails the test, so a new command is never skipped silently.

Every YAML snippet is validated by what reads it: the settings model (and its secret files),
the web configuration loader, ``promtool check rules`` (and the shipped rule of the same
name), ``promtool check config``, ``amtool check-config``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import yaml

from monitor.exporter.webconfig import load_web_config
from monitor.health import utcnow
from monitor.notify.sinks import signature
from monitor.settings import Settings, read_settings
from monitor.simulator import (
    DEMO_PUBLIC_KEY,
    DEMO_SECRET_KEY,
    Simulator,
    demo_integrations,
)
from tests.conftest import free_port, require_binary
from tests.docs_pages import (
    ROOT,
    Block,
    Command,
    Segment,
    all_blocks,
    commands,
    segments,
)
from tests.receivers import Receiver, running

#: The account the docs' examples name: the context's configuration has it.
DOCS_ACCOUNT = "acme-nl"
#: The operator of the docs' examples (``muted by alice``).
DOCS_USER = "alice"
#: Fixed ports in the docs; each block gets free ones instead.
DOC_PORTS = ("8080", "9877")
#: Absolute paths in the docs; each block gets directories of its own instead.
DOC_ROOTS = ("/run/secrets/", "/var/lib/integration-monitor/", "/backups/")
#: What ``export NAME=...`` stands for: the simulator's keys.
PLACEHOLDERS = {"SENDCLOUD_PUBLIC_KEY": DEMO_PUBLIC_KEY, "SENDCLOUD_SECRET_KEY": DEMO_SECRET_KEY}

#: Commands the runner does not run, by their first words, and why. Keep it small: anything
#: that can run against the simulator should.
NOT_RUN: dict[tuple[str, ...], str] = {
    ("pip", "install"): "installs the package; the runner runs the installed integration-monitor",
    ("docker",): "no container engine here; tests/system/test_image.py builds and runs the "
    "image with podman, tests/test_deploy.py checks the compose file",
    ("sudo", "apt-get"): "installs system packages (.ci/run does, in CI)",
    (".venv/bin/pytest",): "the test suite itself (tests/test_docs_facts.py checks the paths "
    "and test IDs it names)",
    (".venv/bin/python", "bench/"): "the benchmark, minutes long (tests/system/test_bench.py "
    "runs bench/daemon.py --quick)",
}
#: Programs the runner runs (``make`` is dry-run, ``export`` sets the context).
RUNNABLE = ("integration-monitor", "sqlite3")
#: Subcommands that run until stopped: started, waited for, stopped at the block's end.
LONG_RUNNING = ("run", "demo", "simulator")
#: Subcommands that read the history file a running daemon writes.
NEEDS_HISTORY = ("mute", "unmute", "mutes", "report")
#: Exit codes other than 0, and why.
EXPECTED_EXIT = {
    "check": (2, "Nagios CRITICAL: the simulator's demo shops include failing ones"),
}
KNOWN_LANGS = {
    "sh": "run",
    "console": "run ($ lines; the lines after one are its output, compared)",
    "yaml": "validated (test_yaml_snippet_is_valid)",
    "json": "parsed; docs/alerts.md's events are validated against the schema by test_docs.py",
    "jsonc": "not validated: an abridged webhook payload ('...the events above...')",
    "python": "run (test_python_snippet_verifies_real_signatures)",
    "": "plain text (its paths are checked by test_docs_facts.py)",
}
WEB_CONFIG_KEYS = {"tls_server_config", "basic_auth_users", "http_server_config"}

BLOCKS = all_blocks()
RUN_BLOCKS = [b for b in BLOCKS if b.lang in ("sh", "console")]
YAML_BLOCKS = [b for b in BLOCKS if b.lang == "yaml"]


def not_run_reason(argv: tuple[str, ...]) -> str | None:
    for prefix, reason in NOT_RUN.items():
        if len(argv) >= len(prefix) and all(
            word == p or (p.endswith("/") and word.startswith(p))
            for word, p in zip(argv, prefix, strict=False)
        ):
            return reason
    return None


def settings_snippet(block: Block) -> bool:
    """A YAML block the settings model reads (a part of the configuration file)."""
    if block.lang != "yaml":
        return False
    data = yaml.safe_load(block.text)
    return isinstance(data, dict) and set(data) <= set(Settings.model_fields)


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, mappings merged key by key; ``accounts`` merged by name (a
    page's snippet of an account adds to the account the runner points at the simulator)."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        elif key == "accounts" and isinstance(value, list) and isinstance(merged.get(key), list):
            by_name = {a.get("name", "default"): a for a in merged[key]}
            for account in value:
                name = account.get("name", "default")
                by_name[name] = merge(by_name.get(name, {}), account)
            merged[key] = list(by_name.values())
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@dataclass
class Ran:
    """One command the runner ran (or started), and what went wrong, if anything."""

    where: str
    command: str
    code: int | None = None
    expected: int = 0
    output: str = ""
    problem: str | None = None


@dataclass
class Outcome:
    block: Block
    ran: list[Ran] = field(default_factory=list)
    not_run: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # programs not installed here


class Background:
    """A long-running command: its process and everything it printed."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, ran: Ran) -> None:
        self.ran = ran
        #: a simulator's address: when it stops, something must have used it
        self.simulator: str | None = None
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines[-40:])

    def stop(self) -> None:
        if self.simulator is not None and self.process.poll() is None:
            served = httpx.get(f"http://{self.simulator}/_simulator/requests", timeout=5)
            if not served.json()["requests"]:
                self.ran.problem = "nothing used this simulator: do the commands point at it?"
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.ran.code = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.ran.code = self.process.wait(timeout=5)
            self.ran.problem = "did not stop within 15 s of SIGTERM"
        self._reader.join(timeout=2)
        self.ran.output = self.output
        if self.ran.problem is None and self.ran.code != 0:
            self.ran.problem = f"exit code {self.ran.code} after SIGTERM (0 expected)"


class BlockRun:
    """One block's context and its commands, run in order."""

    def __init__(self, block: Block, sim: Simulator, tmp: Path, receiver: Receiver) -> None:
        self.block = block
        self.outcome = Outcome(block)
        self.tmp = tmp
        self.cwd = tmp / "cwd"
        self.cwd.mkdir()
        for entry in ROOT.iterdir():  # repository paths resolve as in a checkout
            if not entry.name.startswith("."):
                (self.cwd / entry.name).symlink_to(entry)
        for root in DOC_ROOTS:
            (tmp / root.strip("/")).mkdir(parents=True)
        self.receiver = receiver
        self.ports = {port: free_port() for port in DOC_PORTS}
        self.mute_ids: dict[str, str] = {}
        self.last_mute: str | None = None
        self.daemons: list[tuple[Background, str]] = []  # (process, listen address)
        self.background: list[Background] = []
        bin_dir = str(Path(sys.executable).parent)
        self.env = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(tmp),
            "LOGNAME": DOCS_USER,
            "USER": DOCS_USER,
            "LANG": "C.UTF-8",
            "MONITOR_LISTEN_ADDRESS": f"127.0.0.1:{self.ports['9877']}",
            "MONITOR_STATE_FILE": self.substitute("/var/lib/integration-monitor/alerts.json"),
            "MONITOR_CONFIG_FILE": str(tmp / "monitor.yaml"),
        }
        config: dict[str, Any] = {
            "accounts": [
                {"name": DOCS_ACCOUNT, "api_url": sim.url, "oauth2_token_url": sim.token_url}
            ]
        }
        page = [b for b in BLOCKS if b.page == block.page and b.line < block.line]
        for earlier in page:
            if settings_snippet(earlier):
                config = merge(config, yaml.safe_load(self.substitute(earlier.text)))
        if len(config.get("accounts", [])) != 1:
            self.outcome.problems.append(
                f"{block.page}'s snippets define several accounts: teach the runner which "
                "credentials and simulator each gets"
            )
        text = yaml.safe_dump(config, sort_keys=False)
        self.prepare_files(text)
        (tmp / "monitor.yaml").write_text(text)

    # -- the context ------------------------------------------------------------------------

    def substitute(self, text: str) -> str:
        """The docs' ports, paths and mute IDs as they are in this block's context."""
        for port, free in self.ports.items():
            text = re.sub(rf"(?<![\d.]){port}(?!\d)", str(free), text)
        for root in DOC_ROOTS:
            text = re.sub(rf"(?<![\w/]){re.escape(root)}", f"{self.tmp}{root}", text)
        for documented, real in self.mute_ids.items():
            text = re.sub(rf"\b{documented}\b", real, text)
        return text

    def prepare_files(self, text: str) -> None:
        """Write the secret files a text names, as the reader would have them."""
        for name in re.findall(rf"{re.escape(str(self.tmp))}/run/secrets/([\w.-]+)", text):
            path = self.tmp / "run" / "secrets" / name
            if name.endswith("_url"):  # a receiver's URL: a real server on loopback
                content = f"json://127.0.0.1:{self.receiver.server.server_address[1]}/{name}"
            elif "secret_key" in name:
                content = DEMO_SECRET_KEY
            elif "badge_secret" in name:
                content = "a-badge-secret-of-32-characters!"
            else:
                self.outcome.problems.append(
                    f"the runner does not know what /run/secrets/{name} holds: teach prepare_files"
                )
                continue
            path.write_text(content + "\n")

    def export(self, segment: Segment) -> None:
        for word in segment.argv[1:]:
            name, eq, value = word.partition("=")
            if not eq:
                continue
            if value == "...":
                if name not in PLACEHOLDERS:
                    self.outcome.problems.append(f"no value for the placeholder {word}")
                    continue
                value = PLACEHOLDERS[name]
            value = self.substitute(value)
            self.prepare_files(value)
            self.env[name] = value

    # -- running ------------------------------------------------------------------------------

    def run(self) -> Outcome:
        try:
            for command in commands(self.block):
                try:
                    found = segments(command.text)
                except ValueError as exc:
                    self.outcome.problems.append(f"line {command.line}: {exc}")
                    continue
                for segment in found:
                    self.segment(segment, command, found[-1] is segment)
        finally:
            for process in reversed(self.background):
                process.stop()
        return self.outcome

    def segment(self, segment: Segment, command: Command, last: bool) -> None:
        where = f"{self.block.page}:{command.line}"
        argv = segment.argv
        if not argv:
            return
        if argv[0] == "export":
            self.export(segment)
            return
        reason = not_run_reason(argv)
        if reason is not None:
            self.outcome.not_run.append((segment.text, reason))
            return
        if argv[0] == "make":
            self.make(segment, where)
            return
        if argv[0] not in RUNNABLE:
            self.outcome.problems.append(
                f"{where}: the runner does not know {argv[0]!r} ({segment.text}): run it "
                "(RUNNABLE) or say why not (NOT_RUN)"
            )
            return
        if argv[0] != "integration-monitor" and shutil.which(argv[0]) is None:
            self.outcome.missing.append(argv[0])
            return
        sub = argv[1] if argv[0] == "integration-monitor" and len(argv) > 1 else ""
        text = self.substitute(segment.text)
        if sub in NEEDS_HISTORY or "history.db" in text:
            account = argv[argv.index("--account") + 1] if "--account" in argv else DOCS_ACCOUNT
            if not self.history_ready(where, account):
                return
        self.prepare_files(text)
        if sub in LONG_RUNNING or segment.background:
            self.start(text, sub, where)
            return
        stated = re.search(r"#.*\bexit code (\d+)", command.text)  # what the docs say it exits
        expected = int(stated[1]) if stated else EXPECTED_EXIT.get(sub, (0, ""))[0]
        ran = Ran(where, text, expected=expected)
        self.outcome.ran.append(ran)
        try:
            completed = subprocess.run(
                ["sh", "-ec", text],
                env=self.env,
                cwd=self.cwd,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except subprocess.TimeoutExpired:
            ran.problem = "did not finish within 60 s"
            return
        ran.code = completed.returncode
        ran.output = (completed.stdout + completed.stderr)[-3000:]
        if ran.code != expected:
            ran.problem = f"exit code {ran.code}, expected {expected}"
            return
        if sub == "mute":
            made = re.match(r"([0-9a-f]+): ", completed.stdout)
            self.last_mute = made[1] if made else None
            self.mute_ids["ID"] = self.last_mute or "ID"
        if last and command.output:
            ran.problem = self.compare(command.output, completed.stdout)

    def compare(self, documented: list[str], stdout: str) -> str | None:
        """The output a console block shows, against what was printed: IDs and times may
        differ (a documented mute ID then stands for the real one in later commands)."""
        printed = [line for line in stdout.splitlines() if line.strip()]
        if len(printed) != len(documented):
            return f"printed {printed!r}, the docs show {documented!r}"
        for shown, line in zip(documented, printed, strict=True):
            pattern, ids = "", []
            position = 0
            variable = re.compile(
                r"\b(?=[0-9a-f]*[a-f])[0-9a-f]{8}\b"
                r"|\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)"
            )
            for found in variable.finditer(shown):
                pattern += re.escape(shown[position : found.start()])
                if "T" in found[0]:
                    pattern += r"\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d)"
                else:
                    pattern += f"(?P<id{len(ids)}>[0-9a-f]{{8}})"
                    ids.append(found[0])
                position = found.end()
            pattern += re.escape(shown[position:])
            match = re.fullmatch(pattern, line)
            if match is None:
                return f"printed {line!r}, the docs show {shown!r}"
            for index, documented_id in enumerate(ids):
                self.mute_ids[documented_id] = match[f"id{index}"]
        return None

    def start(self, text: str, sub: str, where: str, *, env: dict[str, str] | None = None) -> None:
        """A long-running command, until it is ready (stopped when the block ends)."""
        ran = Ran(where, text + "  (until the block ends, then SIGTERM)")
        self.outcome.ran.append(ran)
        process = Background(["sh", "-c", "exec " + text], env or self.env, self.cwd, ran)
        self.background.append(process)
        if sub == "simulator":
            listen = re.search(r"--listen\s+(\S+)", text)
            address = listen[1] if listen else "127.0.0.1:8080"
            ready = lambda: _connects(address)  # noqa: E731
            process.simulator = address
        else:
            address = (env or self.env)["MONITOR_LISTEN_ADDRESS"]
            ready = lambda: _status(f"http://{address}/readyz") == 200  # noqa: E731
        if not _wait(ready, process, 30):
            ran.problem = f"not ready within 30 s:\n{process.output}"
            return
        if sub in ("run", "demo"):
            self.daemons.append((process, address))

    def history_ready(self, where: str, account: str) -> bool:
        """A daemon writes the history and knows the account (one is started, as the
        reader's running daemon, when the block has none)."""
        if not self.daemons:
            env = dict(self.env)
            keys_given = {
                "SENDCLOUD_PUBLIC_KEY",
                "SENDCLOUD_SECRET_KEY",
                "SENDCLOUD_SECRET_KEY_FILE",
            }
            in_file = "secret_key" in Path(self.env["MONITOR_CONFIG_FILE"]).read_text()
            if not keys_given & set(env) and not in_file:
                env |= PLACEHOLDERS
            self.start("integration-monitor run", "run", f"{where} (the running daemon)", env=env)
            if not self.daemons:
                return False
        process, address = self.daemons[0]
        url = f"http://{address}/api/v1/availability?account={account}"
        if not _wait(lambda: _status(url) == 200, process, 30):
            self.outcome.problems.append(
                f"{where}: the daemon's history has no account {account!r} after 30 s:\n"
                + process.output
            )
            return False
        return True

    def make(self, segment: Segment, where: str) -> None:
        """A dry run (the target exists and resolves); the integration-monitor commands of
        its recipe run as if typed."""
        argv = ["make", "--no-print-directory", "-n", "-C", str(ROOT), *segment.argv[1:]]
        ran = Ran(where, " ".join(argv))
        self.outcome.ran.append(ran)
        completed = subprocess.run(
            argv,
            env={**_without_make(os.environ), **segment.assignments},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        ran.code, ran.output = completed.returncode, completed.stdout + completed.stderr
        if ran.code != 0:
            ran.problem = f"exit code {ran.code}, expected 0"
            return
        for line in completed.stdout.splitlines():
            if re.match(r"\S*integration-monitor\s", line.strip() + " "):
                typed = re.sub(r"^\S*integration-monitor", "integration-monitor", line.strip())
                for part in segments(typed):
                    self.segment(part, Command(typed, int(where.rsplit(":", 1)[1])), True)


def _without_make(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment without what an outer ``make test`` passes down (its jobserver)."""
    return {k: v for k, v in environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}


def _connects(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def _wait(ready: Any, process: Background, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.process.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def outcomes() -> Iterator[dict[str, Outcome]]:
    """Every runnable block, run concurrently against one simulator."""
    with (
        Simulator(demo_integrations(utcnow())) as sim,
        tempfile.TemporaryDirectory(prefix="docs-run-") as scratch,
        running(Receiver()) as receiver,
    ):

        def one(index: int, block: Block) -> Outcome:
            tmp = Path(scratch) / str(index)
            tmp.mkdir()
            return BlockRun(block, sim, tmp, receiver).run()

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(one, range(len(RUN_BLOCKS)), RUN_BLOCKS))
        yield {outcome.block.where: outcome for outcome in results}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("block", RUN_BLOCKS, ids=lambda b: b.where)
def test_commands_in_the_docs_run(block: Block, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[block.where]
    for program in outcome.missing:
        require_binary(program)
    failures = outcome.problems + [
        f"{r.where}: {r.command}\n  {r.problem}\n{_indent(r.output)}"
        for r in outcome.ran
        if r.problem
    ]
    assert not failures, "\n".join(failures)
    assert outcome.ran or outcome.not_run


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines()[-25:])


def test_every_block_is_of_a_known_kind() -> None:
    unknown = [f"{b.where}: ```{b.lang}" for b in BLOCKS if b.lang not in KNOWN_LANGS]
    assert not unknown, f"say in KNOWN_LANGS how these are checked: {unknown}"


def test_the_runner_runs_the_commands_that_matter() -> None:
    """The commands of the quick start, the simulator section and the CLI reference are run,
    not listed as not run."""
    typed = {
        segment.argv[1]
        for block in RUN_BLOCKS
        for command in commands(block)
        for segment in segments(command.text)
        if segment.argv[:1] == ("integration-monitor",) and len(segment.argv) > 1
    }
    assert {"check", "run", "simulator", "report", "mute", "routes", "notify-test"} <= typed


# -- snippets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=lambda b: b.where)
def test_yaml_snippet_is_valid(block: Block, tmp_path: Path) -> None:
    """Each YAML snippet, read by what reads it in production."""
    run = _SnippetContext(tmp_path)
    text = run.substitute(block.text)
    data = yaml.safe_load(text)
    if isinstance(data, list) and all(
        isinstance(rule, dict) and ("alert" in rule or "record" in rule) for rule in data
    ):
        _check_rules(data, tmp_path)
    elif isinstance(data, dict) and "groups" in data:
        _check_rules([r for group in data["groups"] for r in group["rules"]], tmp_path)
    elif isinstance(data, dict) and {"route", "inhibit_rules"} & set(data):
        path = tmp_path / "alertmanager.yml"
        path.write_text(text)
        _tool(["amtool", "check-config", str(path)])
    elif isinstance(data, dict) and {"scrape_configs", "global", "rule_files"} & set(data):
        path = tmp_path / "prometheus.yml"
        path.write_text(text)
        _tool(["promtool", "check", "config", "--syntax-only", str(path)])
    elif isinstance(data, dict) and set(data) <= WEB_CONFIG_KEYS:
        path = tmp_path / "web.yml"
        path.write_text(text)
        _web_files(data, tmp_path)
        load_web_config(path)
    elif isinstance(data, dict) and set(data) <= set(Settings.model_fields):
        path = tmp_path / "monitor.yaml"
        path.write_text(text)
        run.prepare(text)
        settings = read_settings(path, {})
        settings.alerting.resolved_outbound()  # receivers' and webhooks' URL files read
        if "accounts" in data or "sendcloud" in data:
            settings.resolved_accounts()
    else:
        pytest.fail(f"{block.where}: the runner does not know what reads this snippet")


class _SnippetContext:
    """The docs' absolute paths under a test directory, their secret files written."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        for root in DOC_ROOTS:
            (tmp / root.strip("/")).mkdir(parents=True, exist_ok=True)

    def substitute(self, text: str) -> str:
        for root in DOC_ROOTS:
            text = re.sub(rf"(?<![\w/]){re.escape(root)}", f"{self.tmp}{root}", text)
        return text

    def prepare(self, text: str) -> None:
        for name in re.findall(rf"{re.escape(str(self.tmp))}/run/secrets/([\w.-]+)", text):
            content = "json://127.0.0.1:9/hook" if name.endswith("_url") else DEMO_SECRET_KEY
            (self.tmp / "run" / "secrets" / name).write_text(content + "\n")


def _tool(argv: list[str]) -> None:
    require_binary(argv[0])
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def _check_rules(rules: list[dict[str, Any]], tmp: Path) -> None:
    """promtool accepts them, and a rule named like a shipped one is that rule (the fields
    shown are the shipped file's)."""
    path = tmp / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "docs", "rules": rules}]}))
    _tool(["promtool", "check", "rules", str(path)])
    shipped = {
        rule.get("alert") or rule.get("record"): rule
        for group in yaml.safe_load((ROOT / "deploy/prometheus/rules.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    for rule in rules:
        name = rule.get("alert") or rule.get("record")
        if name not in shipped:
            continue
        assert _shown_in(rule, shipped[name]), f"{name} is not the shipped rule"


def _shown_in(shown: Any, shipped: Any) -> bool:
    """The snippet's fields are the shipped ones (it may leave some out; spacing aside)."""
    if isinstance(shown, dict):
        return isinstance(shipped, dict) and all(
            key in shipped and _shown_in(value, shipped[key]) for key, value in shown.items()
        )
    if isinstance(shown, str) and isinstance(shipped, str):
        return shown.split() == shipped.split()
    return bool(shown == shipped)


def _web_files(data: dict[str, Any], tmp: Path) -> None:
    """The certificate files a web configuration names (relative to it), made by a test CA."""
    tls = data.get("tls_server_config") or {}
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    if "cert_file" in tls:
        leaf.cert_chain_pems[0].write_to_path(str(tmp / tls["cert_file"]))
    if "key_file" in tls:
        leaf.private_key_pem.write_to_path(str(tmp / tls["key_file"]))
    if "client_ca_file" in tls:
        ca.cert_pem.write_to_path(str(tmp / tls["client_ca_file"]))


def test_python_snippet_verifies_real_signatures() -> None:
    """The receiver-side check docs/alerts.md gives accepts the daemon's own signatures and
    refuses a changed body and an old timestamp."""
    [block] = [b for b in BLOCKS if b.lang == "python"]
    namespace: dict[str, Any] = {}
    exec(compile(block.text, block.where, "exec"), namespace)  # noqa: S102 - our own docs
    verify = namespace["verify"]
    secret, body = b"shared-secret", b'{"version": "2"}'
    now = str(int(time.time()))
    headers = {"X-Signature-Timestamp": now, "X-Signature-SHA256": signature(secret, now, body)}
    assert verify(secret, headers, body)
    assert not verify(secret, headers, body + b" ")
    old = str(int(time.time()) - 3600)
    assert not verify(
        secret,
        {"X-Signature-Timestamp": old, "X-Signature-SHA256": signature(secret, old, body)},
        body,
    )


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "json"], ids=lambda b: b.where)
def test_json_snippet_parses(block: Block) -> None:
    json.loads(block.text)
