"""`ml model|code|environment`: uploads are content-addressed archives, versions are listed newest
first, and an environment carries its conda file as text."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fake_propylon import WS_ID, FakeServer, Run, output_json
from propylon.client.profile import Profile


def test_model_create_uploads_then_registers(
    run: Run, signed_in: Profile, fake: FakeServer, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\x00\x01")
    shown = output_json(
        run("ml", "model", "create", "--name", "sk", "--version", "1", "--path", str(folder))
    )
    [blob] = fake.blobs.values()
    assert shown["path"] == f"sha256:{hashlib.sha256(blob).hexdigest()}"
    assert shown["id"] == f"{WS_ID}/models/sk/versions/1"
    assert shown["type"] == "custom_model"
    run("ml", "model", "create", "--name", "sk", "--version", "2", "--path", str(folder))
    assert len(fake.blobs) == 1  # same content, same blob
    versions = run("ml", "model", "list", "--name", "sk", "--query", "[].version", "-o", "tsv")
    assert versions.stdout == "2\n1\n"
    assert output_json(run("ml", "model", "show", "--name", "sk"))["version"] == "2"
    assert output_json(run("ml", "model", "list", "--query", "[].name")) == ["sk"]


def test_model_from_a_yaml_file_with_relative_path(
    run: Run, signed_in: Profile, fake: FakeServer, tmp_path: Path
) -> None:
    (tmp_path / "m.pkl").write_bytes(b"model")
    (tmp_path / "model.yml").write_text("name: from-yaml\nversion: 3\npath: m.pkl\n")
    shown = output_json(run("ml", "model", "create", "-f", str(tmp_path / "model.yml")))
    assert shown["version"] == "3"


def test_code_and_environment(
    run: Run, signed_in: Profile, fake: FakeServer, tmp_path: Path
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "score.py").write_text("def run(x): return x\n")
    code = output_json(
        run("ml", "code", "create", "-n", "score", "-v", "1", "--path", str(tmp_path / "src"))
    )
    assert code["path"].startswith("sha256:")
    (tmp_path / "conda.yaml").write_text("dependencies:\n  - pip:\n    - numpy\n")
    env = output_json(
        run(
            "ml",
            "environment",
            "create",
            "-n",
            "env",
            "-v",
            "1",
            "--conda-file",
            str(tmp_path / "conda.yaml"),
            "--image",
            "python:3.11",
        )
    )
    assert env["conda_file"] == {"dependencies": [{"pip": ["numpy"]}]}
    assert env["image"] == "python:3.11"


def test_asset_without_version_is_one_line(run: Run, signed_in: Profile) -> None:
    result = run("ml", "model", "create", "--name", "sk", "--path", ".")
    assert result.stderr == (
        "propylon: error: (MissingArgument) give the asset a version (--version or 'version:' "
        "in the file).\n"
    )
