"""The ``propylon`` command line (mirrors ``az`` / ``az ml``)."""

from propylon.cli.main import app, main

__all__ = ["app", "main"]
