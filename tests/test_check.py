"""``gateway check``: template compilation, unknown variables, filters and tests, with locations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config.build import preset_names
from gateway.config.loader import parse_yaml
from gateway.tooling.lint import lint_provider, template_uses


def check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    code = main(["check", str(path)])
    out, err = capsys.readouterr()
    return code, out, err.replace(str(path), "gateway.yaml")


PROVIDER = """\
providers:
  chat:
    preset: openai-chat
    api_key: sk-test
"""


def test_a_clean_config_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(tmp_path, PROVIDER, capsys)
    assert code == 0, err
    assert "ok, version" in out


def test_an_unknown_variable_is_reported_where_it_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = check(
        tmp_path,
        PROVIDER
        + """\
    request:
      body:
        user: "{{ reqq.user }}"
        seed: "{{ req.metadata.seed }}"
""",
        capsys,
    )
    assert code == 1
    assert err.splitlines() == [
        "gateway.yaml:7:9: providers.chat.request.body.user: unknown variable 'reqq' in "
        "'{{ reqq.user }}' (known here: model, provider, req, stream)",
        "gateway.yaml: 1 error(s)",
    ]


@pytest.mark.parametrize(
    ("section", "tree", "unknown"),
    [
        ("response", {"events": {"type": "text", "text": "{{ event.text }}"}}, "event"),
        ("stream", {"default": {"type": "text", "text": "{{ body.text }}"}}, "body"),
        ("stream", {"discriminator": "evnt.type"}, "evnt"),
        ("errors", {"message": "{{ req.model }}"}, "req"),
        ("request", {"path": "/{{ body.x }}"}, "body"),
    ],
)
def test_each_section_has_its_own_names(
    section: str, tree: dict[str, object], unknown: str
) -> None:
    document = parse_yaml("providers: {}\n", "gateway.yaml")
    issues = lint_provider("p", {section: tree}, document, {})
    assert [issue.message.split(" in ")[0] for issue in issues] == [f"unknown variable '{unknown}'"]


def test_names_bound_by_each_and_let_are_known_only_inside() -> None:
    spec = {
        "request": {
            "let": {"first": "{{ req.turns[0] }}", "second": "{{ first.role }}"},
            "body": {
                "messages": {
                    "$each": "req.turns",
                    "as": "turn",
                    "if": "turn.role != 'system' and loop_index < 10",
                    "do": {
                        "$let": {"text": "{{ turn.parts | by_type('text') | first }}"},
                        "in": {"content": "{{ text.text }}", "index": "{{ loop_index }}"},
                    },
                },
                "outside": "{{ turn.role }}",  # not bound here
                "after_let": "{{ text }}",  # not bound here either
                "from_request_let": "{{ second }}",
                "jinja_loop": "{% for t in req.turns %}{{ t.role }}{% endfor %}",
            },
        }
    }
    document = parse_yaml("providers: {}\n", "gateway.yaml")
    issues = lint_provider("p", spec, document, {})
    assert sorted((issue.path[-1], issue.message.split(" in ")[0]) for issue in issues) == [
        ("after_let", "unknown variable 'text'"),
        ("outside", "unknown variable 'turn'"),
    ]


def test_unknown_filters_and_tests_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = check(
        tmp_path,
        PROVIDER
        + """\
    request:
      body:
        a: "{{ req.tools | by_kind('function') }}"
        b: "{% if req.user is shouting %}x{% endif %}"
""",
        capsys,
    )
    assert code == 1
    lines = err.splitlines()
    assert lines[0].startswith("gateway.yaml:7:9: providers.chat.request.body.a: ")
    assert "by_kind" in lines[0]
    assert lines[1].startswith("gateway.yaml:8:9: providers.chat.request.body.b: ")
    assert "shouting" in lines[1]
    assert lines[-1] == "gateway.yaml: 2 error(s)"


def test_a_template_that_does_not_compile_is_reported_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = check(
        tmp_path, PROVIDER + '    request:\n      body:\n        a: "{{ req.user + }}"\n', capsys
    )
    assert code == 1
    [issue, total] = err.splitlines()
    assert issue.startswith("gateway.yaml:7:9: providers.chat.request.body.a: template syntax")
    assert total == "gateway.yaml: 1 error(s)"


def test_a_preset_template_is_located_in_the_preset_file() -> None:
    preset = parse_yaml(
        "request:\n  body:\n    model: '{{ model }}'\n    bad: '{{ mdl }}'\n", "presets/mine.yaml"
    )
    document = parse_yaml("providers:\n  p: {preset: mine}\n", "gateway.yaml")
    [issue] = lint_provider("p", preset.data, document, preset.positions)
    assert str(issue).startswith("presets/mine.yaml:4:5: providers.p.request.body.bad: ")


@pytest.mark.parametrize("preset", preset_names())
def test_every_bundled_preset_passes_the_template_checks(preset: str) -> None:
    from gateway.config.build import _resolve_preset

    spec, positions = _resolve_preset(preset)
    document = parse_yaml("providers: {}\n", "gateway.yaml")
    assert [str(issue) for issue in lint_provider(preset, spec, document, positions)] == []
    assert sum(1 for _ in template_uses(spec)) > 10  # the walk reaches the templates


def test_the_command_line_exits_non_zero_on_template_errors(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(PROVIDER + '    request:\n      body:\n        a: "{{ reqq }}"\n')
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert f"{path}:7:9: providers.chat.request.body.a: unknown variable 'reqq'" in result.stderr
