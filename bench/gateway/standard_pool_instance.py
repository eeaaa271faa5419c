"""``python -m propylon.inference`` with the standard library's thread pool for user code.

Takes the same arguments. ``pool_compare.py`` measures it against the instance as shipped
(:class:`propylon.inference.threads.UserThreadPool`); nothing else differs.
"""

from __future__ import annotations

import concurrent.futures

from propylon.inference import runner
from propylon.inference.cli import main


class StandardPool(concurrent.futures.ThreadPoolExecutor):
    """``ThreadPoolExecutor`` behind the constructor and ``shutdown`` of ``UserThreadPool``."""

    def __init__(self, size: int, *, name: str = "pool") -> None:
        super().__init__(size, thread_name_prefix=name)

    def shutdown(self, *, cancel_queued: bool = True) -> None:  # type: ignore[override]
        super().shutdown(wait=False, cancel_futures=cancel_queued)


vars(runner)["UserThreadPool"] = StandardPool

if __name__ == "__main__":
    raise SystemExit(main())
