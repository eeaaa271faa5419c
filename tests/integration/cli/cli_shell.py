"""Running the real ``propylon`` command against a real server, as a person at a shell would.

:class:`Shell` runs ``python -m propylon …`` in a subprocess with its own
``PROPYLON_CONFIG_DIR`` (one per person signed in), so every test goes through argument
parsing, the token cache on disk, TLS with the server's CA and the one-line error policy.
:func:`approve_device_code` plays the user at the verification page.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from propylon.testing import RunningServer

_CODE = re.compile(r"open the page (?P<uri>\S+) and enter the code (?P<code>\S+) to authenticate")


@dataclass
class Shell:
    """One person's terminal: their config dir and working directory."""

    config_dir: Path
    cwd: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "PROPYLON_CONFIG_DIR": str(self.config_dir), "NO_COLOR": "1"}

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "propylon", *args],
            cwd=self.cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str, timeout: float = 600) -> str:
        """stdout of a command that must succeed (its stderr in the failure message)."""
        result = self.run(*args, timeout=timeout)
        assert result.returncode == 0, (
            f"propylon {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
        )
        return result.stdout

    def json(self, *args: str, timeout: float = 600) -> Any:
        return json.loads(self.ok(*args, timeout=timeout))

    def tsv(self, *args: str) -> str:
        return self.ok(*args, "-o", "tsv").strip()

    def fails(self, *args: str) -> str:
        """The one line a failing command prints (asserting there is exactly one)."""
        result = self.run(*args)
        assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("propylon: error: ("), lines[0]
        return lines[0]

    def device_login(self, server: RunningServer, username: str, password: str) -> str:
        """``propylon login`` (device code), approved through the page; returns its stdout."""
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "propylon",
                "login",
                "--server",
                server.control_url,
                "--ca-cert",
                str(server.ca_cert),
                "--tenant",
                server.bootstrap["tenant_id"],
                "--subscription",
                server.bootstrap["subscription_id"],
            ],
            cwd=self.cwd,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        prompt = ""
        for line in process.stderr:
            prompt += line
            match = _CODE.search(line)
            if match:
                approve_device_code(server, match["uri"], match["code"], username, password)
                break
        else:
            process.kill()
            raise AssertionError(f"no device code prompt in:\n{prompt}")
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        return stdout


def approve_device_code(
    server: RunningServer, uri: str, code: str, username: str, password: str
) -> None:
    """What the user does in a browser: open the page, type the code, sign in, approve."""
    with server.client() as client:
        page = client.get(uri)
        assert page.status_code == 200
        answer = client.post(
            uri,
            data={
                "user_code": code,
                "username": username,
                "password": password,
                "action": "approve",
            },
        )
    assert answer.status_code == 200, answer.text
    assert isinstance(answer, httpx.Response)
