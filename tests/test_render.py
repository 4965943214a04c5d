"""Template rendering at load (SPEC 1): the common ``var()`` / ``env_var()`` strings are
rendered without Jinja (importing it is a tenth of a run's startup); whatever the path, the
result, the errors and the secrets recorded must be Jinja's."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revseg.project.render import Renderer, TemplateFailure
from revseg.secrets import Secrets

VARIABLES: dict[str, Any] = {"ltv": 400.0, "n": 3, "name": "Ada", "none": None, "flag": True,
                             "items": [1, "a"], "nl": "x\n"}
ENVIRON = {"TOKEN": "s3cr3t", "EMPTY": ""}

CALLS = ["{{ var('ltv') }}", "{{var('n')}}", "{{  var( 'name' )  }}", "{{ var('none') }}",
         "{{ var('flag') }}", "{{ var('items') }}", "{{ var('nl') }}", "{{ env_var('TOKEN') }}",
         "{{ env_var('EMPTY') }}", "{{ env_var('MISSING', 'fallback') }}", '{{ env_var("MISSING", "") }}',
         "{{ var('missing', 'd') }}"]
TEXT = st.text(alphabet="ab {}%#-\n'\"", max_size=6)


def _jinja(text: str) -> tuple[str | None, str | None, set[str]]:
    renderer = Renderer(VARIABLES, Secrets(), ENVIRON)
    renderer._render_calls = lambda _text: None  # type: ignore[method-assign]
    return _outcome(renderer, text)


def _outcome(renderer: Renderer, text: str) -> tuple[str | None, str | None, set[str]]:
    try:
        result, error = renderer.render(text), None
    except TemplateFailure as exc:
        result, error = None, str(exc)
    return result, error, set(renderer.secrets.values)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(TEXT, st.sampled_from(CALLS)), max_size=5))
def test_rendering_without_jinja_is_jinjas(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert _outcome(Renderer(VARIABLES, Secrets(), ENVIRON), text) == _jinja(text)


@pytest.mark.parametrize("text", [
    "value: {{ var('ltv') }}\n", "{{ env_var('TOKEN') }}", "{{ var('n') }}{{ var('n') }}",
    "{{ var('missing') }}", "{{ env_var('MISSING') }}", "{{ var('ltv') }", "{{ var('ltv') * 2 }}",
    "{% if true %}x{% endif %}", "{{ var('ltv') }}\r\n", "a }} b", "{ not a template }\n",
])
def test_cases(text: str) -> None:
    assert _outcome(Renderer(VARIABLES, Secrets(), ENVIRON), text) == _jinja(text)


def test_jinja_is_imported_only_for_templates_that_need_it() -> None:
    renderer = Renderer(VARIABLES, Secrets(), ENVIRON)
    assert renderer.render("{{ var('ltv') }} and {{ env_var('TOKEN') }}") == "400.0 and s3cr3t"
    assert renderer._env is None
    assert renderer.render("{{ var('n') + 1 }}") == "4" and renderer._env is not None
