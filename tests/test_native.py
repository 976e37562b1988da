"""The hot path runs compiled (mypyc), and a build that no longer matches its source is told.

``make install`` compiles ``gateway.native.COMPILED``; the suite runs against those extensions,
as a deployment does (``conftest.py`` refuses to start on stale ones)."""

from __future__ import annotations

import importlib.util
import logging

import pytest

from gateway import native


def test_every_hot_path_module_runs_compiled_from_its_current_source() -> None:
    found = native.status()
    assert found.compiled == native.COMPILED, (
        f"not compiled: {found.source}, stale: {found.stale}; run `make install` "
        "(scripts/compile_native.py)"
    )
    for module in native.COMPILED:
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None
        assert spec.origin.endswith(".so"), spec.origin


def test_the_build_records_the_digest_of_each_source_it_compiled() -> None:
    recorded = native.recorded_digests()
    assert set(recorded) == set(native.COMPILED)
    assert recorded["gateway.templating"] == native.source_digest("gateway.templating")


def test_an_extension_built_from_another_source_is_stale() -> None:
    other = {module: "0" * 64 for module in native.COMPILED}
    found = native.status(digests=other)
    assert found.stale == native.COMPILED
    assert found.compiled == ()


def test_a_module_with_no_extension_runs_from_source() -> None:
    found = native.status(("gateway.config.loader", "gateway.templating"))
    assert found.source == ("gateway.config.loader",)
    assert found.compiled == ("gateway.templating",)


def test_startup_warns_of_stale_code_and_tells_how_to_rebuild(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("gateway.test-native")
    with caplog.at_level(logging.INFO, logger=logger.name):
        assert native.report(logger).compiled == native.COMPILED
    assert caplog.records[-1].getMessage() == f"hot path compiled: {len(native.COMPILED)} modules"
    caplog.clear()
    older = native.status(digests={module: "0" * 64 for module in native.COMPILED})
    with caplog.at_level(logging.INFO, logger=logger.name):
        native.report(logger, older)
    [warning] = caplog.records
    assert warning.levelno == logging.WARNING
    assert "make install" in warning.getMessage()
    assert "gateway.templating" in warning.getMessage()
