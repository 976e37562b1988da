"""Pytest plugin: snapshot-test an operator's mappings (installed with the gateway).

Any test that takes the ``gateway_case`` argument runs once per case found under the cases
folder (``cases/<provider>/<name>.request.json``, see ``gateway.testing.cases``). The
``gateway_rendered`` fixture is that case rendered through the operator's ``gateway.yaml``, and
``gateway_snapshot`` is syrupy's ``snapshot`` storing one readable JSON file per case::

    def test_mapping(gateway_case, gateway_rendered, gateway_snapshot):
        assert gateway_rendered == gateway_snapshot

Where things are (paths relative to the ini file's folder, else the rootdir)::

    [pytest]
    gateway_config = gateway.yaml
    gateway_cases = cases

or ``--gateway-config`` / ``--gateway-cases`` on the command line. Update the snapshots after
an intended template change with ``pytest --snapshot-update``; review the diff.

This module is loaded by every pytest run in an environment with the gateway installed, so it
imports nothing heavy (and not syrupy, an optional dependency) until a test asks for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from gateway.config.build import Runtime
    from gateway.testing.cases import MappingCase


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gateway", "gateway mapping snapshots")
    group.addoption("--gateway-config", help="gateway.yaml whose mappings the cases render")
    group.addoption("--gateway-cases", help="folder of cases/<provider>/<name>.request.json")
    parser.addini("gateway_config", "gateway.yaml for mapping snapshots", default="gateway.yaml")
    parser.addini("gateway_cases", "folder of mapping cases", default="cases")


def _base(config: pytest.Config) -> Path:
    return config.inipath.parent if config.inipath is not None else config.rootpath


def _setting(config: pytest.Config, name: str) -> Path:
    value = config.getoption(f"gateway_{name}") or config.getini(f"gateway_{name}")
    path = Path(str(value))
    return path if path.is_absolute() else _base(config) / path


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "gateway_case" not in metafunc.fixturenames:
        return
    from gateway.testing.cases import discover

    folder = _setting(metafunc.config, "cases")
    cases = discover(folder)
    if not cases:
        raise pytest.UsageError(
            f"no mapping cases under {folder} (expected <provider>/<name>.request.json)"
        )
    metafunc.parametrize("gateway_case", cases, ids=[case.id for case in cases])


@pytest.fixture(scope="session")
def gateway_runtime(pytestconfig: pytest.Config) -> Runtime:
    """The operator's config, loaded once per session."""
    from gateway.config.build import load_runtime
    from gateway.config.errors import ConfigError

    path = _setting(pytestconfig, "config")
    try:
        return load_runtime(path)
    except ConfigError as exc:
        problem = f"{path} has errors:\n" + "\n".join(map(str, exc.issues))
    pytest.fail(problem, pytrace=False)


@pytest.fixture
def gateway_rendered(gateway_case: MappingCase, gateway_runtime: Runtime) -> dict[str, Any]:
    """The case through the mapping: upstream request, canonical events, Responses output."""
    from gateway.testing.cases import CaseError

    try:
        return gateway_case.render(gateway_runtime)
    except CaseError as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)


@pytest.fixture
def gateway_snapshot(snapshot: Any) -> Any:
    """syrupy's ``snapshot``, one ``.json`` file per case, diffable in review."""
    from syrupy.extensions.json import JSONSnapshotExtension

    return snapshot.use_extension(JSONSnapshotExtension)
