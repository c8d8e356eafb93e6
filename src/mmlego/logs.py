"""One logging set-up for entry points: the library itself only calls ``logging.getLogger``."""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_path: str | Path | None = None, *, level: int = logging.INFO) -> None:
    """Route the root logger, warnings and uncaught errors to ``log_path`` (and stderr).

    Snakemake scripts call this first with ``snakemake.log[0]`` so every job has one log
    that mirrors its output path.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=handlers, force=True)
    logging.captureWarnings(True)

    def log_uncaught(exc_type, exc, tb):
        logging.getLogger("mmlego").error("failed: %s", exc, exc_info=(exc_type, exc, tb))

    sys.excepthook = log_uncaught


@contextmanager
def log_duration(logger: logging.Logger, what: str) -> Iterator[None]:
    """Log a "started" and a "finished (elapsed)" line around a long step."""
    logger.info("%s started", what)
    start = time.perf_counter()
    yield
    logger.info("%s finished in %.1f s", what, time.perf_counter() - start)
