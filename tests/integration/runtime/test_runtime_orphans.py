"""A server that dies without stopping its instances: the next one on the data dir kills them."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from pathlib import Path

import pytest
from runtime_support import EXAMPLES, eventually, make_spec, settled

from propylon.runtime import DeploymentState, LocalBackend

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

DYING_SERVER = textwrap.dedent(
    """
    import asyncio, os, sys
    from pathlib import Path
    from runtime_support import EXAMPLES, make_spec, settled
    from propylon.runtime import LocalBackend
    from propylon.store import Database, ResourceStore

    async def main():
        db = Database.connect(f"sqlite:///{sys.argv[1]}/state.db")
        db.migrate()
        backend = LocalBackend(Path(sys.argv[1]) / "data", ResourceStore(db))
        spec = make_spec("left-behind", EXAMPLES / "echo")
        await backend.apply(spec)
        await settled(backend, spec.deployment_id)
        print(backend.instances(spec.deployment_id)[0].pid, flush=True)
        os._exit(0)  # no shutdown: as if the server had been killed

    asyncio.run(main())
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
async def test_instances_left_by_a_dead_server_are_killed_at_the_next_start(
    tmp_path: Path, backend: LocalBackend
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        DYING_SERVER,
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
    )
    out, _ = await process.communicate()
    orphan = int(out.decode().split()[-1])
    assert _alive(orphan)

    # The fixture's backend uses the same data dir; its first apply reaps.
    spec = make_spec("blue", EXAMPLES / "echo")
    await backend.apply(spec)
    await eventually(lambda: not _alive(orphan), within=5)
    assert (await settled(backend, spec.deployment_id)).state is DeploymentState.SUCCEEDED
