"""Logging helpers shared by the commands."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quieted(name: str, level: int) -> Iterator[None]:
    """Raise a library logger's threshold for a block: where our own one-line message already says what it
    would log (a refusal, a failed start), its warnings are noise on stderr."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)
