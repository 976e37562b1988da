"""The operator's snapshot testing, run as an operator runs it: pytest on the example folder.

The example under ``examples/mapping-snapshots`` must pass against its committed snapshots,
and a template edit in its gateway.yaml must fail with a diff that names the changed field,
until the snapshots are updated.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.testing.cases import MappingCase, discover

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mapping-snapshots"


@pytest.fixture
def example(pytester: pytest.Pytester) -> Path:
    """A copy of the example in pytester's folder, so nothing here writes to the repo."""
    for entry in EXAMPLE.iterdir():
        if entry.name in ("__pycache__", ".pytest_cache"):
            continue
        target = pytester.path / entry.name
        if entry.is_dir():
            shutil.copytree(entry, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(entry, target)
    return pytester.path


def test_the_example_passes_against_its_committed_snapshots(
    pytester: pytest.Pytester, example: Path
) -> None:
    result = pytester.runpytest_inprocess("-p", "no:randomly")
    cases = discover(EXAMPLE / "cases")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == len(cases), (
        "the example's snapshots differ (see the diff above). If a preset changed on purpose, "
        "update them: .venv/bin/pytest examples/mapping-snapshots --snapshot-update"
    )
    assert len(cases) >= 6
    snapshots = {path.stem for path in (EXAMPLE / "__snapshots__" / "test_mappings").iterdir()}
    assert snapshots == {f"test_mapping[{case.id}]" for case in cases}  # none stale, none missing


def test_a_template_edit_shows_up_as_a_snapshot_diff(
    pytester: pytest.Pytester, example: Path
) -> None:
    config = example / "gateway.yaml"
    config.write_text(
        config.read_text().replace(
            "user: \"{{ req.user or 'gateway' }}\"", 'user: "{{ req.user }}"'
        )
    )
    result = pytester.runpytest_inprocess("-p", "no:randomly")
    # Only the chat cases without a user change: the tool-call case sends its own user.
    result.assert_outcomes(passed=5, failed=2)
    output = result.stdout.str()
    assert "test_mapping[chat.weather]" in output
    assert "test_mapping[chat.rate-limited]" in output
    result.stdout.fnmatch_lines(['*-*"user": "gateway"'])  # the diff names the field

    updated = pytester.runpytest_inprocess("-p", "no:randomly", "--snapshot-update")
    updated.assert_outcomes(passed=7)
    snapshot = example / "__snapshots__" / "test_mappings" / "test_mapping[chat.weather].json"
    assert '"user": "gateway"' not in snapshot.read_text()
    pytester.runpytest_inprocess("-p", "no:randomly").assert_outcomes(passed=7)


def test_a_case_in_the_wrong_provider_folder_is_reported(
    pytester: pytest.Pytester, example: Path
) -> None:
    (example / "cases" / "chat" / "misplaced.request.json").write_text(
        '{"model": "fast", "input": "hi"}'
    )
    result = pytester.runpytest_inprocess("-p", "no:randomly", "-k", "misplaced")
    result.assert_outcomes(errors=1)
    assert "During handling" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        ["*chat.misplaced: model 'fast' routes to provider 'gemini', not 'chat'*"]
    )


def test_case_discovery_pairs_requests_with_recorded_answers() -> None:
    cases = {case.id: case for case in discover(EXAMPLE / "cases")}
    assert cases["chat.weather"] == MappingCase(
        "chat",
        "weather",
        EXAMPLE / "cases" / "chat" / "weather.request.json",
        EXAMPLE / "cases" / "chat" / "weather.upstream.sse",
    )
    assert cases["chat.rate-limited"].upstream_status == 429
    assert cases["gemini.unary-tool"].upstream_kind == "json"
    assert cases["claude.request-only"].upstream_path is None
