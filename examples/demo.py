"""`make demo`: start a server on the embedded defaults and show what it does."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from propylon.testing import RunningServer


def main() -> int:
    data_dir = Path(".propylon").resolve()
    server = RunningServer.start(data_dir, port=8080, gateway_port=8081)
    info = server.bootstrap
    with server.client() as client:
        health = client.get(f"{server.control_url}/healthz").json()
    print(f"server up: control plane {info['control_plane_url']}, gateway {info['gateway_url']}")
    print(f"health: {json.dumps(health)}")
    print(f"bootstrap facts: {data_dir / 'bootstrap.json'}")
    print(f"stop it with: kill {server.process.pid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
