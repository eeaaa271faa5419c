"""`ml online-deployment`: local assets uploaded and referenced, --all-traffic, logs, and
one-line errors for bad files and failed provisioning."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from fake_propylon import WS_ID, FakeServer, Run, output_json
from propylon.client.profile import Profile

DEPLOYMENT_YML = """\
$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json
name: blue
endpoint_name: my-endpoint
model:
  path: ../model-1/model/
code_configuration:
  code: ../model-1/onlinescoring/
  scoring_script: score.py
environment:
  conda_file: ../model-1/environment/conda.yaml
  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest
instance_type: Standard_DS3_v2
instance_count: 1
request_settings:
  request_timeout_ms: 3000
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """``deployments/blue.yml`` next to a ``model-1`` folder, as in the examples."""
    model_1 = tmp_path / "model-1"
    (model_1 / "model").mkdir(parents=True)
    (model_1 / "model" / "sklearn_regression_model.pkl").write_bytes(b"pickled")
    (model_1 / "onlinescoring").mkdir()
    (model_1 / "onlinescoring" / "score.py").write_text("def init(): pass\ndef run(x): return x\n")
    (model_1 / "environment").mkdir()
    (model_1 / "environment" / "conda.yaml").write_text("dependencies:\n  - python=3.11\n")
    (tmp_path / "deployments").mkdir()
    (tmp_path / "deployments" / "blue.yml").write_text(DEPLOYMENT_YML)
    return tmp_path


def _members(blob: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        return sorted(tar.getnames())


def test_create_uploads_local_assets_and_refers_to_them(
    run: Run, signed_in: Profile, fake: FakeServer, project: Path
) -> None:
    fake.put_endpoint("my-endpoint")
    result = run(
        "ml", "online-deployment", "create", "-f", str(project / "deployments" / "blue.yml")
    )
    shown = output_json(result)
    assert shown["name"] == "blue"
    assert shown["endpoint_name"] == "my-endpoint"
    assert shown["provisioning_state"] == "Succeeded"
    # Two archives (model, code), content-addressed, with their folder names kept.
    archives = {tuple(_members(blob)) for blob in fake.blobs.values()}
    assert ("model", "model/sklearn_regression_model.pkl") in archives
    assert ("onlinescoring", "onlinescoring/score.py") in archives
    for put in fake.sent("PUT", "/blobs/"):
        assert put.url.path.endswith("sha256:" + hashlib.sha256(put.content).hexdigest())
    [put] = fake.sent("PUT", "/deployments/blue")
    body = fake.body_of(put)
    properties = body["properties"]
    assert properties["model"].startswith(f"{WS_ID}/models/blue-model/versions/")
    assert properties["codeConfiguration"]["codeId"].startswith(
        f"{WS_ID}/codes/blue-code/versions/"
    )
    assert properties["codeConfiguration"]["scoringScript"] == "score.py"
    assert properties["environmentId"].startswith(f"{WS_ID}/environments/blue-env/versions/")
    assert properties["requestSettings"] == {"requestTimeout": "PT3S"}
    assert body["sku"] == {"name": "Default", "capacity": 1}
    [env] = fake.sent("PUT", "/environments/blue-env/versions/")
    assert fake.body_of(env)["properties"]["condaFile"] == "dependencies:\n  - python=3.11\n"
    assert "Creating deployment blue of my-endpoint" in result.stderr


def test_creating_again_registers_nothing_new(
    run: Run, signed_in: Profile, fake: FakeServer, project: Path
) -> None:
    fake.put_endpoint("my-endpoint")
    path = str(project / "deployments" / "blue.yml")
    run("ml", "online-deployment", "create", "-f", path)
    versions = len(fake.sent("PUT", "/versions/"))
    run("ml", "online-deployment", "create", "-f", path)
    assert len(fake.sent("PUT", "/versions/")) == versions


def test_all_traffic_moves_the_endpoint_traffic_and_overrides_apply(
    run: Run, signed_in: Profile, fake: FakeServer, project: Path
) -> None:
    fake.put_endpoint("my-endp1", "AADToken")
    path = str(project / "deployments" / "blue.yml")
    result = run(
        "ml",
        "online-deployment",
        "create",
        "-n",
        "green",
        "-e",
        "my-endp1",
        "-f",
        path,
        "--all-traffic",
    )
    assert result.exit_code == 0, result.stderr
    assert fake.sent("PUT", "/onlineEndpoints/my-endp1/deployments/green")
    endpoint_puts = [
        r for r in fake.sent("PUT", "/onlineEndpoints/my-endp1") if "deployments" not in r.url.path
    ]
    assert fake.body_of(endpoint_puts[-1])["properties"]["traffic"] == {"green": 100}
    assert fake.body_of(endpoint_puts[-1])["properties"]["authMode"] == "AADToken"


def test_update_set_instance_count_keeps_the_asset_references(
    run: Run, signed_in: Profile, fake: FakeServer, project: Path
) -> None:
    fake.put_endpoint("my-endpoint")
    run("ml", "online-deployment", "create", "-f", str(project / "deployments" / "blue.yml"))
    first = fake.body_of(fake.sent("PUT", "/deployments/blue")[-1])
    shown = output_json(
        run(
            "ml",
            "online-deployment",
            "update",
            "-n",
            "blue",
            "-e",
            "my-endpoint",
            "--set",
            "instance_count=2",
        )
    )
    assert shown["instance_count"] == 2
    second = fake.body_of(fake.sent("PUT", "/deployments/blue")[-1])
    assert second["sku"]["capacity"] == 2
    assert second["properties"]["model"] == first["properties"]["model"]
    assert second["properties"]["codeConfiguration"] == first["properties"]["codeConfiguration"]


def test_get_logs_prints_the_text_and_sends_az_names(
    run: Run, signed_in: Profile, fake: FakeServer, project: Path
) -> None:
    fake.put_endpoint("my-endpoint")
    run("ml", "online-deployment", "create", "-f", str(project / "deployments" / "blue.yml"))
    result = run(
        "ml",
        "online-deployment",
        "get-logs",
        "-n",
        "blue",
        "-e",
        "my-endpoint",
        "--lines",
        "3",
        "--container-type",
        "storage-initializer",
    )
    assert result.stdout == "line 8\nline 9\nline 10\n"
    [post] = fake.sent("POST", "/getLogs")
    assert fake.body_of(post) == {"containerType": "StorageInitializer", "tail": 3}


def test_list_and_delete(run: Run, signed_in: Profile, fake: FakeServer, project: Path) -> None:
    fake.put_endpoint("my-endpoint")
    run("ml", "online-deployment", "create", "-f", str(project / "deployments" / "blue.yml"))
    names = run(
        "ml", "online-deployment", "list", "-e", "my-endpoint", "--query", "[].name", "-o", "tsv"
    )
    assert names.stdout == "blue\n"
    assert (
        run("ml", "online-deployment", "delete", "-n", "blue", "-e", "my-endpoint", "-y").exit_code
        == 0
    )
    assert output_json(run("ml", "online-deployment", "list", "-e", "my-endpoint")) == []


def test_failed_provisioning_is_one_line_with_the_server_reason(
    run: Run, signed_in: Profile, fake: FakeServer, project: Path
) -> None:
    fake.put_endpoint("my-endpoint")
    fake.fail_operations = True
    result = run(
        "ml", "online-deployment", "create", "-f", str(project / "deployments" / "blue.yml")
    )
    assert result.exit_code == 1
    assert (
        result.stderr.splitlines()[-1] == "propylon: error: (ModelError) init() raised ValueError"
    )


# --- one-line errors for bad input -------------------------------------------------------------


def test_missing_file_is_one_line(run: Run, signed_in: Profile, tmp_path: Path) -> None:
    result = run("ml", "online-deployment", "create", "-f", str(tmp_path / "nope.yml"))
    assert result.exit_code == 1
    assert (
        result.stderr == f"propylon: error: (FileNotFound) {tmp_path / 'nope.yml'}: no such file.\n"
    )
    assert result.stdout == ""


def test_bad_yaml_is_one_line_with_the_position(
    run: Run, signed_in: Profile, fake: FakeServer, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("name: blue\nmodel: [unclosed\ninstance_count: 1\n")
    result = run("ml", "online-deployment", "create", "-f", str(bad))
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"propylon: error: (InvalidYaml) {bad} line ")
    assert "Traceback" not in result.output
    assert fake.requests == []  # nothing was sent


def test_yaml_that_is_not_a_mapping(run: Run, signed_in: Profile, tmp_path: Path) -> None:
    bad = tmp_path / "list.yml"
    bad.write_text("- name: blue\n")
    result = run("ml", "online-endpoint", "create", "-f", str(bad))
    assert result.stderr == (
        f"propylon: error: (InvalidYaml) {bad}: expected a mapping of fields (such as 'name: …'), "
        "found list.\n"
    )


def test_a_missing_local_asset_names_the_field(
    run: Run, signed_in: Profile, fake: FakeServer, project: Path
) -> None:
    fake.put_endpoint("my-endpoint")
    (project / "model-1" / "onlinescoring" / "score.py").unlink()
    (project / "model-1" / "onlinescoring").rmdir()
    result = run(
        "ml", "online-deployment", "create", "-f", str(project / "deployments" / "blue.yml")
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "propylon: error: (FileNotFound) 'code_configuration.code': ../model-1/onlinescoring/ "
        "does not exist"
    )


def test_an_invalid_enum_from_the_mapping_is_one_line(
    run: Run, signed_in: Profile, tmp_path: Path
) -> None:
    path = tmp_path / "endpoint.yml"
    path.write_text("name: my-endpoint\nauth_mode: password\n")
    result = run("ml", "online-endpoint", "create", "-f", str(path))
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("propylon: error: (InvalidYaml) 'auth_mode' must be one of key")


def test_debug_shows_the_traceback(run: Run, signed_in: Profile, tmp_path: Path) -> None:
    result = run("ml", "online-deployment", "create", "-f", str(tmp_path / "nope.yml"), "--debug")
    assert result.exit_code != 0
    assert result.exception is not None
    assert "no such file" in str(result.exception)
