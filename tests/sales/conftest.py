"""Fixtures for the sales tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import REQUIRE_SERVICES

if TYPE_CHECKING:
    from wharf.sales.spark import SparkEngine


def _java_problem() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if not (home and (Path(home) / "bin" / "java").is_file()) and shutil.which("java") is None:
        return "Java is not installed (no JAVA_HOME, no java on PATH): Spark needs Java 17+"
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        return f"pyspark is not installed ({exc}): install the `spark` extra"
    return None


@pytest.fixture(scope="session")
def spark_engine() -> SparkEngine:
    """One Spark engine, and so one JVM, for the whole run: skipped without Java, a failure
    when WHARF_TEST_REQUIRE_SERVICES=1."""
    problem = _java_problem()
    if problem is not None:
        if REQUIRE_SERVICES:
            pytest.fail(f"{problem} (WHARF_TEST_REQUIRE_SERVICES=1)")
        pytest.skip(f"Spark tests skipped: {problem}")
    from wharf.sales.spark import SparkEngine, session

    engine = SparkEngine(master="local[2]")
    session(engine.master)  # started here, so that a failure to start shows as one
    return engine
