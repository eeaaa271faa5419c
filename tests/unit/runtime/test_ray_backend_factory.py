"""Choosing a backend, and what the Ray backend does before it has a cluster (nothing)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from propylon.errors import ConfigurationError, NotFound, ServiceUnavailable
from propylon.runtime import Backend, LocalBackend
from propylon.runtime.ray import RayBackend, create_backend
from propylon.store import Database, ResourceStore


@pytest.fixture
def resources(tmp_path: Path) -> ResourceStore:
    db = Database.connect(f"sqlite:///{tmp_path / 'state.db'}")
    db.migrate()
    return ResourceStore(db)


def test_local_is_the_local_backend(tmp_path: Path, resources: ResourceStore) -> None:
    backend = create_backend("local", data_dir=tmp_path, resources=resources)
    assert isinstance(backend, LocalBackend)


def test_ray_is_the_ray_backend_and_touches_no_cluster_yet(
    tmp_path: Path, resources: ResourceStore
) -> None:
    pytest.importorskip("ray", reason="Ray is not installed")
    backend = create_backend(
        "ray", data_dir=tmp_path, resources=resources, ray_address="ray://ray-head:10001"
    )
    assert isinstance(backend, RayBackend)
    assert isinstance(backend, Backend)
    assert backend.address == "ray://ray-head:10001"
    with pytest.raises(NotFound):
        backend.status("/subscriptions/s/x/onlineEndpoints/e/deployments/d")
    with pytest.raises(ServiceUnavailable):
        _ = backend.proxy_url
    assert backend.deployments() == []
    assert backend.application("/a/onlineEndpoints/E/deployments/D") == "e_d"


def test_unknown_runtime_is_a_configuration_error(tmp_path: Path, resources: ResourceStore) -> None:
    with pytest.raises(ConfigurationError, match="Unknown runtime 'docker'"):
        create_backend("docker", data_dir=tmp_path, resources=resources)


def test_ray_backend_without_ray_says_how_to_install_it(
    resources: ResourceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    with pytest.raises(ConfigurationError, match=r"pip install 'propylon\[ray\]'"):
        RayBackend(resources)
