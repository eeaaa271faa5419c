"""The environment cache key: equal for specs that build the same thing, different otherwise."""

from __future__ import annotations

import pytest

from propylon.runtime import EnvironmentSpec, environment_key
from propylon.runtime.environment_specs import normalise_environment, normalise_requirement
from propylon.runtime.environments import inherited_environment


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("numpy", "numpy"),
        ("  NumPy  ", "numpy"),
        ("scikit_learn==1.9.1", "scikit-learn==1.9.1"),
        ("Scikit.Learn >= 1.0 , < 2", "scikit-learn>=1.0,<2"),
        ("inference-schema[Numpy-Support, pandas_support]==1.3.0",
         "inference-schema[numpy-support,pandas-support]==1.3.0"),
        ('requests ;  python_version  >= "3.8"', 'requests; python_version >= "3.8"'),
        ("joblib  # pinned below", "joblib"),
        ("# a comment", None),
        ("   ", None),
        ("--no-index", "--no-index"),
        ("--find-links   /srv/wheels", "--find-links /srv/wheels"),
        ("./local/pkg-1.0-py3-none-any.whl", "./local/pkg-1.0-py3-none-any.whl"),
        ("pkg @ file:///srv/pkg.whl", "pkg@file:///srv/pkg.whl"),
        ("https://example.com/pkg.whl", "https://example.com/pkg.whl"),
    ],
)  # fmt: skip
def test_requirement_lines_are_normalised(line: str, expected: str | None) -> None:
    assert normalise_requirement(line) == expected


def test_key_ignores_order_case_spacing_comments_and_duplicates() -> None:
    a = EnvironmentSpec(pip_requirements=("numpy==2.4.6", "Scikit_Learn>=1.0", "joblib"))
    b = EnvironmentSpec(
        pip_requirements=("# deps", "joblib", "scikit-learn >= 1.0", "numpy == 2.4.6", "joblib")
    )
    assert environment_key(a) == environment_key(b)
    assert len(environment_key(a)) == 64
    int(environment_key(a), 16)


@pytest.mark.parametrize(
    "other",
    [
        EnvironmentSpec(pip_requirements=("numpy==2.4.5", "scikit-learn>=1.0", "joblib")),
        EnvironmentSpec(pip_requirements=("numpy==2.4.6", "scikit-learn>=1.0")),
        EnvironmentSpec(
            pip_requirements=("numpy==2.4.6", "scikit-learn>=1.0", "joblib", "--no-index")
        ),
        EnvironmentSpec(
            pip_requirements=("numpy==2.4.6", "scikit-learn>=1.0", "joblib"), python_version="3.10"
        ),
    ],
)
def test_key_changes_with_what_gets_built(other: EnvironmentSpec) -> None:
    base = EnvironmentSpec(pip_requirements=("numpy==2.4.6", "scikit-learn>=1.0", "joblib"))
    assert environment_key(base) != environment_key(other)


def test_python_version_is_kept_to_major_minor() -> None:
    three_eight = EnvironmentSpec(pip_requirements=("x",), python_version="3.8")
    patch = EnvironmentSpec(pip_requirements=("x",), python_version="3.8.10")
    assert normalise_environment(patch)["python"] == "3.8"
    assert environment_key(three_eight) == environment_key(patch)


def test_key_covers_the_interpreter_it_is_built_on() -> None:
    spec = EnvironmentSpec(pip_requirements=("x",))
    assert environment_key(spec, base="3.11.7 /a") != environment_key(spec, base="3.12.1 /a")


def test_image_alone_and_empty_spec_mean_the_server_environment() -> None:
    assert EnvironmentSpec().is_server_environment
    assert EnvironmentSpec(image="mcr.microsoft.com/azureml/minimal:latest").is_server_environment
    assert not EnvironmentSpec(pip_requirements=("x",)).is_server_environment


def test_children_inherit_no_server_setting_or_secret() -> None:
    server = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LC_ALL": "C.UTF-8",
        "PIP_INDEX_URL": "http://mirror/simple",
        "PROPYLON_MASTER_KEY": "secret",
        "PROPYLON_DATABASE_URL": "postgresql://u:p@db/propylon",
        "AWS_SECRET_ACCESS_KEY": "secret",
    }
    assert inherited_environment(server) == {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LC_ALL": "C.UTF-8",
        "PIP_INDEX_URL": "http://mirror/simple",
    }
