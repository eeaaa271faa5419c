"""The examples in the authz docstrings run and say what they show."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from propylon.authz import actions, engine, roles, scopes


@pytest.mark.parametrize("module", [scopes, actions, roles, engine], ids=lambda m: m.__name__)
def test_docstring_examples_hold(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
