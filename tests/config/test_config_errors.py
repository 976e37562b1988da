"""Broken configs: every error names file:line:col and the config path, all at once.

The messages are snapshot-tested (syrupy) because they are the operator's interface.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from gateway.config.build import load_runtime, preset_names
from gateway.config.errors import ConfigError

BROKEN: dict[str, str] = {
    "bad_yaml": "providers:\n  echo: {preset: echo\n",
    "unknown_top_level_key": "providers:\n  echo: {preset: echo}\nprovidres: {}\n",
    "unknown_provider_key": "providers:\n  echo:\n    preset: echo\n    api_kye: x\n",
    "misspelled_preset": "providers:\n  claude:\n    preset: anthropc\n    api_key: k\n",
    "wrong_type": "providers:\n  echo:\n    preset: echo\n    timeouts: {connect: fast}\n",
    "dangling_alias": "providers:\n  echo: {preset: echo}\nmodels:\n  fast: claude:claude-haiku\n",
    "alias_without_provider": "providers:\n  echo: {preset: echo}\nmodels:\n  fast: just-a-name\n",
    "missing_default_provider": "default_provider: claude\nproviders:\n  echo: {preset: echo}\n",
    "missing_env_var": "providers:\n  echo:\n    preset: echo\n    base_url: ${ECHO_URL_UNSET_FOR_TEST}\n",
    "no_providers": "default_provider: echo\n",
    "empty_providers": "providers: {}\n",
    "bad_template": "providers:\n  echo:\n    preset: echo\n    request:\n      body:\n        model: '{{ model + }}'\n",
    "unknown_template_form": "providers:\n  echo:\n    preset: echo\n    request:\n      body:\n        messages: {$loop: req.turns}\n",
    "several_errors_at_once": (
        "default_provider: nowhere\n"
        "providers:\n"
        "  echo: {preset: echo, colour: blue}\n"
        "  claude: {preset: anthropc}\n"
        "models:\n"
        "  fast: {target: echo:echo, weight: 3}\n"
    ),
    "not_a_mapping": "- just\n- a list\n",
    "duplicate_key": "providers:\n  echo: {preset: echo}\n  echo: {preset: echo}\n",
}


def check(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_runtime(path, environ={})
    return [str(issue).replace(str(tmp_path) + "/", "") for issue in caught.value.issues]


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_config_messages(name: str, tmp_path: Path, snapshot: SnapshotAssertion) -> None:
    messages = check(tmp_path, BROKEN[name])
    assert messages
    assert all(message.startswith("gateway.yaml:") for message in messages), messages
    assert messages == snapshot


def test_position_points_at_the_offending_key(tmp_path: Path) -> None:
    text = "providers:\n  echo: {preset: echo}\n  claude:\n    preset: anthropc\n"
    [message] = check(tmp_path, text)
    assert message.startswith("gateway.yaml:4:5: providers.claude.preset: 'anthropc' is not one of")


def test_all_errors_of_a_file_are_reported_together(tmp_path: Path) -> None:
    messages = check(tmp_path, BROKEN["several_errors_at_once"])
    assert len(messages) >= 3


def test_schema_enum_lists_exactly_the_shipped_presets() -> None:
    from gateway.config.build import gateway_schema

    enum = gateway_schema()["$defs"]["provider"]["properties"]["preset"]["enum"]
    assert sorted(enum) == preset_names()


def test_missing_api_key_variable_does_not_fail_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "providers:\n  echo: {preset: echo}\n  chat:\n    preset: openai-chat\n    api_key: ${NO_SUCH_KEY_VAR}\n"
    )
    runtime = load_runtime(path, environ={})
    assert runtime.missing_keys == {"chat": "NO_SUCH_KEY_VAR"}


def test_env_defaults_and_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("FROM_DOTENV=dotenv-provider\n")
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "default_provider: ${DEFAULT_PROVIDER:-echo}\nproviders:\n  echo: {preset: echo}\n"
        "models:\n  a: ${ALIAS_TARGET:-echo:echo}\n"
    )
    runtime = load_runtime(path, environ={})
    assert runtime.default_provider == "echo"
    assert runtime.aliases["a"].targets[0].provider == "echo"


def test_version_is_deterministic_and_tracks_secrets(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "providers:\n  echo: {preset: echo}\n  chat: {preset: openai-chat, api_key: '${K}'}\n"
    )
    first = load_runtime(path, environ={"K": "one"}).version
    assert load_runtime(path, environ={"K": "one"}).version == first
    assert load_runtime(path, environ={"K": "two"}).version != first
