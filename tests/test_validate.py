"""`revseg validate`: every error kind of SPEC 2.3, with its message and its exact position."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT, revseg

pytestmark = pytest.mark.duckdb


def _validate(root: Path) -> tuple[int, list[str]]:
    result = revseg("validate", "--project-dir", str(root))
    return result.returncode, [line for line in result.stderr.splitlines() if line and "problem" not in line]


def _segment(text: str) -> dict[str, str]:
    return {"segments/s.yml": text}


CASES: list[tuple[str, str, str]] = [
    # (id, segment file text, expected "line:col: message" prefix match)
    ("unknown-key", "name: s\nwhere: {column: country, op: '=', value: US}\ndescripton: x\n",
     "segments/s.yml:3:1: unknown key 'descripton' in segment (did you mean 'description'?)"),
    ("wrong-type", "name: s\nwhere: {column: country, op: '=', value: US}\ntags: 5\n",
     "segments/s.yml:3:7: tags: Input should be a valid list"),
    ("unknown-model", "name: s\nwhere:\n  aggregate: count\n  model: ordrs\n  op: '>'\n  value: 1\n",
     "segments/s.yml:4:10: unknown model 'ordrs' (did you mean 'orders'?)"),
    ("unknown-column", "name: s\nwhere:\n  all:\n    - column: contry\n      op: '='\n      value: US\n",
     "segments/s.yml:4:15: unknown column 'contry' in model 'customers' (did you mean 'country'?)"),
    ("unknown-segment", "name: s\nwhere:\n  not:\n    segment: nope\n",
     "segments/s.yml:4:5: unknown segment 'nope'"),
    ("unknown-destination", "name: s\nwhere: {column: country, op: '=', value: US}\nsyncs:\n  - destination: nowhere\n",
     "segments/s.yml:4:5: unknown destination 'nowhere'"),
    ("bad-duration", "name: s\nwhere:\n  event: added_to_cart\n  within: 24q\n",
     "segments/s.yml:4:11: bad duration '24q'"),
    ("bad-operator", "name: s\nwhere:\n  column: country\n  op: '=='\n  value: US\n",
     "segments/s.yml:4:7: bad operator '==' for column condition (did you mean '='?)"),
    ("reversed-operator", "name: s\nwhere:\n  column: lifetime_value\n  op: '=>'\n  value: 5\n",
     "segments/s.yml:4:7: bad operator '=>' for column condition (did you mean '>='?)"),
    ("sql-statements", "name: s\nwhere:\n  sql: \"country = 'US'; DROP TABLE customers\"\n",
     "segments/s.yml:3:8: SQL must be one expression, found 2 statements"),
    ("sql-not-expression", "name: s\nwhere:\n  sql: DROP TABLE customers\n",
     "segments/s.yml:3:8: a sql: condition must be one SQL expression, not a DROP statement"),
    ("sql-parse-error", "name: s\nwhere:\n  sql: \"lifetime_value > \"\n",
     "segments/s.yml:3:24: SQL does not parse (duckdb) near '>': Required keyword: 'expression' missing"),
    ("template", "name: s\nwhere:\n  column: lifetime_value\n  op: '>'\n  value: \"{{ var('missing') }}\"\n",
     "segments/s.yml:5:10: var 'missing' is not defined: add it under vars: in revseg.yml"),
    ("value-type", "name: s\nwhere:\n  column: lifetime_value\n  op: '>'\n  value: lots\n",
     "segments/s.yml:5:10: value does not convert to the type of 'lifetime_value' (number)"),
    ("null-in-list", "name: s\nwhere:\n  column: country\n  op: in\n  value: [US, null]\n",
     "segments/s.yml:5:15: null is not a value: use op: is_null"),
    ("missing-op", "name: s\nwhere:\n  column: country\n  value: US\n",
     "segments/s.yml:3:3: missing required key 'op' in column condition"),
    ("no-form", "name: s\nwhere:\n  colum: country\n",
     "segments/s.yml:3:3: a condition needs one of: all, any, not, column, event, aggregate, segment, sql; "
     "found 'colum' (did you mean 'column'?)"),
    ("where-and-sql", "name: s\nwhere: {column: country, op: '=', value: US}\nsql: select 1\n",
     "segments/s.yml:1:1: segment 's' needs exactly one of where: or sql:"),
    ("sql-segment-unknown-column", "name: s\nsql: select customer_id, nosuch from customers\n",
     "segments/s.yml:2:6: segment 's' sql: Binder Error: Referenced column \"nosuch\" not found"),
    ("sql-segment-unknown-table", "name: s\nsql: select customer_id from nosuch\n",
     "segments/s.yml:2:6: segment 's' sql: Catalog Error: Table with name nosuch does not exist"),
    ("cron-out-of-range", "name: s\nrefresh: '0 25 * * *'\nwhere: {column: country, op: '=', value: US}\n",
     "segments/s.yml:2:10: refresh: bad refresh '0 25 * * *': hour field '25' is out of range 0-23"),
    ("sum-of-text", "name: s\nwhere:\n  aggregate: sum\n  model: orders\n  column: status\n  op: '>'\n  value: 1\n",
     "segments/s.yml:5:11: 'sum' needs a numeric column; 'status' is text"),
    ("sql-not-a-condition", "name: s\nwhere:\n  all:\n    - column: country\n      op: is_not_null\n"
     "    - sql: lifetime_value + 1\n",
     "segments/s.yml:6:12: segment 's' sql: the expression is a double, not true or false: make it a comparison"),
    ("sql-types-do-not-fit", "name: s\nwhere:\n  sql: \"country > 1\"\n",
     "segments/s.yml:3:8: segment 's' sql: Binder Error: Cannot compare values of type VARCHAR"),
    ("trait-types-do-not-fit", "name: s\nwhere: {column: country, op: '=', value: US}\ntraits:\n  x: \"country - 1\"\n",
     "segments/s.yml:4:6: segment 's' trait 'x': Binder Error:"),
]


@pytest.mark.parametrize(("case", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_error_is_located(project: Callable[..., Path], case: str, text: str, expected: str) -> None:
    root = project(_segment(text))
    code, lines = _validate(root)
    assert code == 2, lines
    assert any(line.startswith(expected) for line in lines), f"{case}: wanted {expected!r}, got {lines}"


def test_trigger_template_names_only_traits(project: Callable[..., Path]) -> None:
    """A name that is not a trait (nor id) would fail to render for every member: an error
    at validation, not a rejection per record at send time."""
    root = project({
        "segments/s.yml": "name: s\nwhere: {column: country, op: '=', value: US}\ntraits: {email: email}\n"
                          "syncs:\n  - destination: f\n    mode: trigger\n    template: 'Hi {{ first_name }}'\n",
        "destinations/f.yml": "name: f\ntype: file\noptions: {path: out.jsonl}\n"})
    code, lines = _validate(root)
    assert code == 2
    assert lines == ["segments/s.yml:7:15: template uses 'first_name', which is not a trait of the segment "
                     "(it can use: email, id)"]
    (root / "segments/s.yml").write_text((root / "segments/s.yml").read_text().replace(
        "Hi {{ first_name }}", "Hi {{ email | upper }} ({{ id }})"))
    assert _validate(root)[0] == 0


def test_two_syncs_to_one_destination(project: Callable[..., Path]) -> None:
    """A sync's state is keyed by segment and destination: a second sync to the same one
    would share (and corrupt) the first's snapshot."""
    root = project({
        "segments/s.yml": "name: s\nwhere: {column: country, op: '=', value: US}\ntraits: {email: email}\n"
                          "syncs:\n  - destination: f\n  - destination: f\n    mode: upsert\n",
        "destinations/f.yml": "name: f\ntype: file\noptions: {path: out.jsonl}\n"})
    code, lines = _validate(root)
    assert code == 2
    assert [line.split(" (")[0] for line in lines] == [
        "segments/s.yml:6:5: segment 's' syncs to destination 'f' twice"]


def test_cycle_names_the_cycle(project: Callable[..., Path]) -> None:
    root = project({"segments/a.yml": "name: a\nwhere: {segment: b}\n",
                    "segments/b.yml": "name: b\nwhere:\n  segment: a\n"})
    code, lines = _validate(root)
    assert code == 2
    assert lines == ["segments/b.yml:3:3: segment references form a cycle: a -> b -> a"]


def test_unknown_key_in_revseg_yml(project: Callable[..., Path]) -> None:
    config: dict[str, Any] = copy.deepcopy(PROJECT)
    config["modles"] = {}
    root = project(config=config)
    code, lines = _validate(root)
    assert code == 2
    assert lines[0].startswith("revseg.yml:24:1: unknown key 'modles' in revseg.yml (did you mean 'models'?)")


def test_a_wrong_project_entity_is_reported_once(project: Callable[..., Path]) -> None:
    """The segments that rely on revseg.yml's entity do not each add 'no entity' to it."""
    config: dict[str, Any] = copy.deepcopy(PROJECT)
    config["entity"] = "customer"
    root = project({"segments/s.yml": "name: s\nwhere: {column: country, op: '=', value: US}\n"}, config=config)
    code, lines = _validate(root)
    assert code == 2
    assert [line for line in lines if ": " in line and "problem" not in line] == [
        next(line for line in lines if "entity 'customer' is not a model with a primary_key" in line)]


def test_sql_model_that_does_not_run_is_located(project: Callable[..., Path]) -> None:
    """The warehouse's error in a sql: model is a validation error at the sql: value (exit 2),
    as a missing table: is, not a failed query (exit 3)."""
    config: dict[str, Any] = copy.deepcopy(PROJECT)
    config["models"]["orders"] = {"sql": "select * from nosuch", "entity_key": "customer_id"}
    root = project({"segments/s.yml": "name: s\nwhere: {column: country, op: '=', value: US}\n"}, config=config)
    code, lines = _validate(root)
    assert code == 2
    assert lines == ["revseg.yml:19:10: model 'orders' sql: Catalog Error: Table with name nosuch does not exist!"]
    sync = revseg("sync", "--project-dir", str(root))
    assert sync.returncode == 2 and "revseg.yml:19:10: model 'orders' sql:" in sync.stderr


@pytest.mark.parametrize("name", ["segments/s.yml", "destinations/d.yml"])
@pytest.mark.parametrize("text", ["", "# to do\n"])
def test_empty_file_is_an_error(project: Callable[..., Path], name: str, text: str) -> None:
    root = project({"segments/ok.yml": "name: ok\nwhere: {column: country, op: '=', value: US}\n", name: text})
    code, lines = _validate(root)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith(f"{name}:1:1: the file is empty: it should hold ")


def test_vars_using_var_says_so(project: Callable[..., Path]) -> None:
    """vars: are rendered first, with env_var() only: the error says that, rather than that
    a var which is right there under vars: is not defined."""
    config: dict[str, Any] = copy.deepcopy(PROJECT)
    config["vars"] = {"high_value": 500, "very_high": "{{ var('high_value') }}"}
    root = project(config=config)
    code, lines = _validate(root)
    assert code == 2
    assert lines == ["revseg.yml:24:14: vars: may use env_var() but not var() (here var('high_value')): "
                     "write the value itself"]


def test_missing_env_var_names_the_variable(project: Callable[..., Path]) -> None:
    config: dict[str, Any] = copy.deepcopy(PROJECT)
    config["targets"]["dev"]["path"] = "{{ env_var('REVSEG_TEST_NOT_SET') }}"
    root = project(config=config)
    code, lines = _validate(root)
    assert code == 2
    assert "environment variable 'REVSEG_TEST_NOT_SET' is not set" in lines[0]
    assert lines[0].startswith("revseg.yml:6:11:")


def test_secret_never_printed(project: Callable[..., Path]) -> None:
    """A secret that lands in the wrong field is redacted from the error."""
    root = project({"segments/s.yml": "name: s\nwhere:\n  column: country\n  op: '='\n  value: US\n"
                                      "traits:\n  bad: \"{{ env_var('TOKEN') }}\"\n"})
    result = revseg("validate", "--project-dir", str(root), env={"TOKEN": "sk_live_very_secret"})
    assert result.returncode == 2
    assert "sk_live_very_secret" not in result.stderr + result.stdout
    assert "***" in result.stderr


def test_secret_quoted_alone_is_redacted(project: Callable[..., Path]) -> None:
    """A message that quotes only the env_var part of a rendered string (here the column
    the SQL names) must not show it either."""
    root = project({"segments/s.yml": "name: s\nwhere:\n  sql: \"{{ env_var('TOKEN') }} = 1\"\n"})
    result = revseg("validate", "--project-dir", str(root), env={"TOKEN": "sk_live_very_secret"})
    assert result.returncode == 2
    assert "sk_live_very_secret" not in result.stderr + result.stdout
    assert "segments/s.yml:3:8: unknown column '***'" in result.stderr


def test_ten_mistakes_ten_errors(project: Callable[..., Path]) -> None:
    """All problems of a run are reported at once, each at its own place."""
    text = """name: ten
descripton: typo
refresh: 5x
where:
  all:
    - column: lifetime_value
      op: ">>"
      value: 3
    - column: country
      op: in
      value: [US, null]
    - event: added_to_cart
      within: 24q
    - aggregate: sum
      model: ordrs
      column: amount
      op: ">"
      value: 1
    - segment: missing_seg
    - sql: "lifetime_value > 1; drop table customers"
    - column: lifetime_value
      op: ">"
      value: abc
    - sql: nosuchcol = 1
traits:
  email: "{{ var('nope') }}"
syncs:
  - destination: nowhere
"""
    root = project({"segments/ten.yml": text})
    code, lines = _validate(root)
    assert code == 2
    positions = [line.split(": ", 1)[0] for line in lines]
    assert positions == [
        "segments/ten.yml:2:1", "segments/ten.yml:3:10", "segments/ten.yml:7:11", "segments/ten.yml:11:19",
        "segments/ten.yml:13:15", "segments/ten.yml:15:14", "segments/ten.yml:19:7", "segments/ten.yml:20:12",
        "segments/ten.yml:23:14", "segments/ten.yml:24:12", "segments/ten.yml:26:10", "segments/ten.yml:28:5",
    ]


def test_valid_project_passes(project: Callable[..., Path]) -> None:
    root = project({"segments/s.yml": "name: s\nwhere: {column: country, op: '=', value: US}\n"})
    result = revseg("validate", "--project-dir", str(root))
    assert result.returncode == 0, result.stderr
    assert "OK: 1 segment," in result.stdout


def test_unreachable_warehouse_exits_3(project: Callable[..., Path]) -> None:
    config: dict[str, Any] = copy.deepcopy(PROJECT)
    config["targets"]["dev"] = {"type": "postgres", "host": "127.0.0.1", "port": 1, "database": "x",
                                "connect_timeout": 2}
    root = project({"segments/s.yml": "name: s\nwhere: {column: country, op: '=', value: US}\n"}, config=config)
    result = revseg("validate", "--project-dir", str(root))
    assert result.returncode == 3, result.stderr
    assert "cannot connect to PostgreSQL" in result.stderr


def test_libyaml_reads_every_file_as_the_python_parser_does(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Project files are parsed by libyaml where PyYAML has it: the data, the position of
    every value and key and the scalar styles must be the Python parser's (demo project and
    the scaffold, which use every YAML form revseg documents)."""
    from revseg.project import yamlfile
    from revseg.project.scaffold import _files

    root = Path(__file__).resolve().parent.parent
    texts = [p.read_text() for p in sorted([root / "revseg.yml", *root.glob("segments/*.yml"), *root.glob("destinations/*.yml")])]
    texts += [text for name, text in _files("shop").items() if name.endswith(".yml")]
    texts += ["a: yes\nb: NO\nc: true\nd: '1'\ne: 1.5e3\nf: null\ng: ~\nh: 2026-01-01\n", "- {a: [1, 'x', \"é\"]}\n- |\n  block\n"]

    def read(text: str, tmp: Path) -> yamlfile.YamlDoc:
        path = tmp / "f.yml"
        path.write_text(text)
        return yamlfile.load_yaml(path, tmp)[0]

    tmp = tmp_path
    fast = [read(text, tmp) for text in texts]
    monkeypatch.setattr(yamlfile, "_FastLoader", yamlfile._Loader)
    for text, doc in zip(texts, fast, strict=True):
        assert doc == read(text, tmp), text
    assert len(texts) > 10
