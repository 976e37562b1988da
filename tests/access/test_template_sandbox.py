"""Hostile mapping templates are config errors at load time; client content is never code."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from gateway.cli import main
from gateway.config.build import load_runtime
from gateway.config.errors import ConfigError
from tests.access.conftest import client
from tests.support.server import serve_app_in_thread, write_config

BASE = """\
default_provider: echo
providers:
  echo:
    preset: echo
"""

# Each reaches for the interpreter, the filesystem or the environment, or would stall the load.
HOSTILE = {
    "dunder-path": "{{ req.__class__ }}",
    "mro": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "globals": "{{ provider.get.__globals__ }}",
    "cycler-globals": "{{ cycler.__init__.__globals__.os.environ }}",
    "template-reference": "{{ self._TemplateReference__context }}",
    "self": "{{ (self) }}",
    "attr-filter": "{{ req | attr('__class__') }}",
    "attr-dynamic": "{{ req | attr(req.model) }}",
    "map-attribute": "{{ req.turns | map(attribute='__class__') | list }}",
    "getitem-dunder": "{{ req['__init__'] }}",
    "mro-method": "{{ req.items.mro() }}",
    "frame": "{{ (req.turns | first).gi_frame.f_globals }}",
    "format-field": "{{ '{0.__class__}'.format(req) }}",
    "include": "{% include '/etc/passwd' %}",
    "import": "x{% import 'os' as os %}",
    "from-import": "x{% from 'os' import environ %}",
    "extends": "{% extends '/etc/hosts' %}",
    "power": "{{ 9 ** 9999999 }}",
    "huge-repeat": "{{ 'x' * 1000000000 }}",
}


def config_with(template: str, where: str = "body") -> str:
    quoted = template.replace('"', '\\"')
    if where == "body":
        return BASE + f'    request:\n      body:\n        model: "{quoted}"\n'
    if where == "header":
        return BASE + f'    request:\n      headers:\n        x-extra: "{quoted}"\n'
    if where == "stream":
        return (
            BASE + f'    stream:\n      rules:\n        chunk: {{type: text, text: "{quoted}"}}\n'
        )
    return BASE + f'    errors:\n      message: "{quoted}"\n'


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_template_is_refused_when_the_config_loads(tmp_path: Path, name: str) -> None:
    path = write_config(config_with(HOSTILE[name]), tmp_path)
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_runtime(path, environ={})
    assert time.monotonic() - started < 1  # refused before Jinja folds any constant
    [issue] = caught.value.issues
    assert issue.path == ("providers", "echo", "request", "body", "model")
    assert issue.location is not None and issue.location.line == 7
    assert "template refused" in issue.message
    assert "templates may only read the data they are given" in issue.message


@pytest.mark.parametrize("where", ["header", "stream", "errors"])
def test_every_template_section_is_checked(tmp_path: Path, where: str) -> None:
    path = write_config(config_with("{{ req.__class__.__mro__ }}", where), tmp_path)
    with pytest.raises(ConfigError, match="template refused"):
        load_runtime(path, environ={})


def test_gateway_check_reports_the_hostile_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(config_with(HOSTILE["cycler-globals"]), tmp_path)
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "gateway.yaml:7:9: providers.echo.request.body.model: template refused in" in err
    assert "1 error(s)" in err


def test_ordinary_templates_still_load(tmp_path: Path) -> None:
    fine = [
        "{{ req.model }}",
        "{{ req.turns | map(attribute='role') | list }}",
        "{{ event['_meta'] }}",
        "{{ (req.system or '') ~ '!' }}",
        "{{ '%s-%s' | format(model, 1) }}",
        "{{ [1, 2] | sum }}",
        "{{ 3 * 4 }}",
    ]
    for template in fine:
        load_runtime(write_config(config_with(template), tmp_path), environ={})


def test_a_reload_to_a_hostile_template_keeps_the_running_version(tmp_path: Path) -> None:
    path = write_config(BASE, tmp_path)
    with serve_app_in_thread(path) as base_url:
        version = httpx.get(f"{base_url}/healthz").json()["version"]
        path.write_text(config_with(HOSTILE["cycler-globals"]))
        response = httpx.post(f"{base_url}/admin/reload")  # an open gateway: loopback may reload
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "config_invalid"
        assert "template refused" in response.json()["error"]["message"]
        health = httpx.get(f"{base_url}/healthz").json()
        assert health["version"] == version
        assert "template refused" in health["last_error"]["errors"][0]
        echo = client(base_url).responses.create(model="echo", input="still serving")
        assert echo.output_text == "still serving"


def test_client_content_is_data_never_code(tmp_path: Path) -> None:
    hostile_input = "{{ 7 * 7 }} {% include '/etc/passwd' %} {{ cycler.__init__.__globals__ }}"
    with serve_app_in_thread(write_config(BASE, tmp_path)) as base_url:
        sdk = client(base_url)
        answer = sdk.responses.create(model="echo", input=hostile_input, instructions="{{ 1 + 1 }}")
    assert answer.output_text == hostile_input
    assert answer.instructions == "{{ 1 + 1 }}"
