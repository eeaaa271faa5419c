"""What a person at a terminal sees: the live progress of a deployment, and one-line errors.

Commands run under a pseudo-terminal (so Rich draws its spinner and elapsed time) against a real
server; everything the terminal received is checked after ANSI escapes are removed.
"""

from __future__ import annotations

import errno
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_shell import Shell

from propylon.testing import RunningServer

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
MODEL_1 = REPO / "examples" / "model-1"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
_SPINNER = set("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")


def in_terminal(shell: Shell, *args: str, timeout: float = 600) -> tuple[int, str]:
    """Run ``propylon ARGS`` with a pty as its terminal; return its exit code and the screen."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "propylon", *args],
        cwd=shell.cwd,
        env={**shell.env(), "TERM": "xterm-256color", "COLUMNS": "120"},
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        close_fds=True,
    )
    os.close(terminal)
    received = bytearray()
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError as exc:  # EIO once the child has closed the terminal (Linux)
            if exc.errno != errno.EIO:
                raise
            break
        if not chunk:
            break
        received.extend(chunk)
    os.close(controller)
    code = process.wait(timeout=timeout)
    return code, received.decode("utf-8", errors="replace")


def _lines(screen: str) -> list[str]:
    return [line for line in _ANSI.sub("\n", screen).splitlines() if line.strip()]


@pytest.fixture(scope="module")
def admin(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Shell:
    root = tmp_path_factory.mktemp("terminal")
    subprocess.run(
        [sys.executable, str(MODEL_1 / "train.py"), "--out", str(root / "model-1")],
        check=True,
        capture_output=True,
    )
    shell = Shell(root / "admin-config", root)
    shell.ok("login", "--data-dir", str(server.data_dir), "--service-principal")
    shell.ok("configure", "--defaults", "group=default-rg", "workspace=default-ws")
    return shell


def test_a_deployment_shows_live_progress(admin: Shell) -> None:
    admin.ok("ml", "online-endpoint", "create", "-n", "term-ep", "--auth-mode", "key")
    deployment = admin.cwd / "blue.yml"
    deployment.write_text(
        "name: blue\nendpoint_name: term-ep\nmodel:\n  path: ./model-1/model/\n"
        f"code_configuration:\n  code: {MODEL_1 / 'onlinescoring'}\n  scoring_script: score.py\n"
        f"environment:\n  conda_file: {MODEL_1 / 'environment' / 'conda.yaml'}\n"
        "instance_type: Standard_DS3_v2\ninstance_count: 1\n"
    )
    code, screen = in_terminal(admin, "ml", "online-deployment", "create", "-f", "blue.yml")
    assert code == 0, screen
    assert "Creating deployment blue of term-ep" in screen
    assert _SPINNER & set(screen), "no spinner was drawn"
    assert re.search(r"\d:\d\d:\d\d", screen), "no elapsed time was shown"
    assert '"provisioning_state": "Succeeded"' in _ANSI.sub("", screen)


def test_a_bad_yaml_file_is_one_line(admin: Shell) -> None:
    (admin.cwd / "bad.yml").write_text("name: blue\nmodel: [unclosed\n")
    code, screen = in_terminal(admin, "ml", "online-deployment", "create", "-f", "bad.yml")
    assert code == 1
    [line] = _lines(screen)
    assert line.startswith("propylon: error: (InvalidYaml) bad.yml line ")


def test_a_missing_file_is_one_line(admin: Shell) -> None:
    code, screen = in_terminal(admin, "ml", "online-endpoint", "create", "-f", "nope.yml")
    assert code == 1
    assert _lines(screen) == ["propylon: error: (FileNotFound) nope.yml: no such file."]


def test_a_refused_permission_is_one_line(admin: Shell, server: RunningServer) -> None:
    password = "No-roles-pw-1!"
    admin.ok(
        "ad",
        "user",
        "create",
        "--display-name",
        "Nobody",
        "--user-principal-name",
        "nobody@contoso.local",
        "--password",
        password,
    )
    nobody = Shell(admin.cwd / "nobody-config", admin.cwd)
    nobody.ok(
        "login",
        "--server",
        server.control_url,
        "--ca-cert",
        str(server.ca_cert),
        "--tenant",
        server.bootstrap["tenant_id"],
        "-u",
        "nobody@contoso.local",
        "-p",
        password,
        "--subscription",
        server.bootstrap["subscription_id"],
    )
    nobody.ok("configure", "--defaults", "group=default-rg", "workspace=default-ws")
    code, screen = in_terminal(nobody, "ml", "online-endpoint", "list")
    assert code == 1
    [line] = _lines(screen)
    assert line.startswith("propylon: error: (AuthorizationFailed) The client ")
    assert "onlineEndpoints/read" in line
