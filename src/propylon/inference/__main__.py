"""``python -m propylon.inference`` (see :mod:`propylon.inference.cli`)."""

from propylon.inference.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
