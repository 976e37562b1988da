"""``keys:`` in gateway.yaml: from the environment or as a hash, never written in the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config.build import load_runtime
from gateway.config.errors import ConfigError
from tests.access.conftest import ADMIN_KEY, ADMIN_SHA256, KEY_A, KEY_B, KEYS_ENV

BASE = """\
default_provider: echo
providers:
  echo: {preset: echo}
  other: {preset: echo}
models:
  fast: echo:echo
"""


def build(tmp_path: Path, text: str, environ: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "gateway.yaml"
    path.write_text(BASE + text)
    return load_runtime(path, environ=KEYS_ENV if environ is None else environ)


def issues(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, text, environ)
    return [str(issue) for issue in caught.value.issues]


def test_keys_from_the_environment_and_hashes_authenticate(tmp_path: Path) -> None:
    runtime = build(
        tmp_path,
        f"""
keys:
  - {{name: team-a, key: "${{ACCESS_TEST_KEY_A}}", models: [fast]}}
  - {{name: ops, key_sha256: {ADMIN_SHA256.upper()}, admin: true}}
""",
    )
    access = runtime.access
    assert not access.open
    team_a = access.authenticate(KEY_A)
    assert team_a is not None and team_a.name == "team-a" and not team_a.admin
    ops = access.authenticate(ADMIN_KEY)
    assert ops is not None and ops.name == "ops" and ops.admin
    for wrong in (KEY_B, KEY_A[:-1], KEY_A + "x", "", KEY_A.upper(), ADMIN_SHA256):
        assert access.authenticate(wrong) is None


def test_the_runtime_never_holds_a_key_as_text(tmp_path: Path) -> None:
    runtime = build(tmp_path, 'keys:\n  - {name: team-a, key: "${ACCESS_TEST_KEY_A}"}\n')
    assert KEY_A not in repr(runtime)
    assert KEY_A not in repr(runtime.raw)
    assert runtime.raw["keys"][0]["key"] == "***"


@pytest.mark.parametrize(
    "entry",
    [
        "key: gk-literal-0123456789abcdef",
        'key: "${ACCESS_TEST_KEY_UNSET:-gk-literal-0123456789abcdef}"',
        'key: "gk-literal-0123456789abcdef${ACCESS_TEST_KEY_A}"',
    ],
    ids=["literal", "literal-default", "literal-prefix"],
)
def test_a_key_written_in_the_file_is_refused_without_being_shown(
    tmp_path: Path, entry: str
) -> None:
    [message] = issues(tmp_path, f"keys:\n  - name: team-a\n    {entry}\n")
    assert message.endswith(
        " keys[0].key: key 'team-a' is written in the file; write key: ${VARIABLE} "
        "and set the variable in the environment or .env, or store the key's hash in key_sha256"
    )
    assert "gateway.yaml:9:5:" in message
    assert "key_sha256" in message
    assert "gk-literal" not in message


def test_an_unset_variable_disables_the_key_and_the_gateway_stays_closed(tmp_path: Path) -> None:
    runtime = build(tmp_path, 'keys:\n  - {name: team-a, key: "${ACCESS_TEST_KEY_UNSET}"}\n')
    assert not runtime.access.open
    assert dict(runtime.access.disabled) == {"team-a": "ACCESS_TEST_KEY_UNSET"}
    assert runtime.access.authenticate("") is None


def test_no_keys_section_means_open(tmp_path: Path) -> None:
    assert build(tmp_path, "").access.open
    assert build(tmp_path, "keys: []\n").access.open


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'keys:\n  - {name: a, key: "${ACCESS_TEST_KEY_A}", key_sha256: \'' + "0" * 64 + "'}\n",
            "keys[0]: key 'a' sets both key and key_sha256; keep one",
        ),
        (
            "keys:\n  - {name: a, admin: true}\n",
            "keys[0]: key 'a' needs key: ${VARIABLE} or key_sha256",
        ),
        (
            'keys:\n  - {name: a, key: "${ACCESS_TEST_KEY_A}"}\n  - {name: a, key: "${ACCESS_TEST_KEY_B}"}\n',
            "keys[1].name: key name 'a' is already used by keys[0]",
        ),
        (
            'keys:\n  - {name: a, key: "${ACCESS_TEST_KEY_A}"}\n  - {name: b, key: "${ACCESS_TEST_KEY_A}"}\n',
            "keys[1]: key 'b' has the same value as key 'a'",
        ),
        (
            'keys:\n  - {name: a, key: "${ACCESS_TEST_KEY_A}", providers: [echo, nowhere]}\n',
            "keys[0].providers: key 'a' allows provider 'nowhere', which is not configured",
        ),
        (
            'keys:\n  - {name: a, key: "${ACCESS_TEST_KEY_A}", models: ["nowhere:gpt-*"]}\n',
            "keys[0].models: 'nowhere:gpt-*' names provider 'nowhere', which is not configured",
        ),
        (
            "limits:\n  models: {'nowhere:x': {rpm: 1}}\n",
            "limits.models.nowhere:x: 'nowhere:x' names provider",
        ),
        (
            "keys:\n  - {name: 'a b', key_sha256: '" + "0" * 64 + "'}\n",
            "keys[0].name: 'a b' does not match",
        ),
        (
            "keys:\n  - {name: a, key_sha256: abc}\n",
            "keys[0].key_sha256: does not match the pattern",
        ),
    ],
    ids=[
        "both",
        "neither",
        "same-name",
        "same-value",
        "provider",
        "model-pattern",
        "limit",
        "name",
        "hash",
    ],
)
def test_key_entries_are_checked(tmp_path: Path, text: str, expected: str) -> None:
    messages = issues(tmp_path, text)
    assert any(expected in message for message in messages), messages
    assert not any(KEY_A in message or KEY_B in message for message in messages)


def test_globs_and_aliases_in_policies_are_accepted(tmp_path: Path) -> None:
    runtime = build(
        tmp_path,
        'keys:\n  - {name: a, key: "${ACCESS_TEST_KEY_A}", models: [fast, "echo:*", "*:echo", "gpt-*"]}\n'
        "limits:\n  models: {fast: {rpm: 5}, 'echo:*': {tpm: 100}}\n",
    )
    assert [rate.pattern for rate in runtime.access.model_rates] == ["fast", "echo:*"]


def test_a_rotated_key_changes_the_version_and_shows_as_a_changed_key(tmp_path: Path) -> None:
    text = 'keys:\n  - {name: team-a, key: "${ACCESS_TEST_KEY_A}"}\n'
    before = build(tmp_path, text)
    after = build(tmp_path, text, {"ACCESS_TEST_KEY_A": KEY_B})
    assert before.version != after.version
    assert before.fingerprints["key team-a"] != after.fingerprints["key team-a"]
    assert build(tmp_path, text).fingerprints == before.fingerprints  # stable across builds


def test_gateway_check_warns_about_open_gateways_and_disabled_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(BASE)
    assert main(["check", str(path)]) == 0
    assert "no gateway keys configured: the gateway is open" in capsys.readouterr().err

    monkeypatch.delenv("ACCESS_TEST_KEY_UNSET", raising=False)
    path.write_text(BASE + 'keys:\n  - {name: team-a, key: "${ACCESS_TEST_KEY_UNSET}"}\n')
    assert main(["check", str(path)]) == 0
    err = capsys.readouterr().err
    assert "gateway key 'team-a' is disabled: ACCESS_TEST_KEY_UNSET is not set" in err
    assert "open" not in err


def test_key_sha256_is_the_hex_digest_operators_compute() -> None:
    # printf %s "$KEY" | sha256sum  ==  hashlib.sha256(KEY.encode()).hexdigest()
    assert hashlib.sha256(ADMIN_KEY.encode("utf-8")).hexdigest() == ADMIN_SHA256
