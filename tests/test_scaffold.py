"""``revseg init``: the starter project of :func:`scaffold_project` is valid and runs as written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import revseg

from revseg.errors import UsageError
from revseg.project.scaffold import project_name, scaffold_project

pytestmark = pytest.mark.duckdb

STARTER = [
    ".gitignore",
    "README.md",
    "destinations/local_file.yml",
    "revseg.yml",
    "seed/sample.sql",
    "segments/big_spenders.yml",
    "segments/cart_abandoners.yml",
]


def relative(paths: list[Path], root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in paths)


def members(project: Path, segment: str) -> list[dict[str, object]]:
    result = revseg("preview", segment, "--all", "--format", "jsonl", "--project-dir", str(project))
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_writes_the_starter_into_a_new_directory(tmp_path: Path) -> None:
    root = tmp_path / "a" / "shop"
    written = scaffold_project(root)
    assert relative(written, root) == STARTER
    assert all(p.is_file() and p.read_text() for p in written)
    assert "name: shop\n" in (root / "revseg.yml").read_text()


def test_help_describes_what_is_written(tmp_path: Path) -> None:
    result = revseg("init", "--help")
    assert result.returncode == 0
    segments = sum(1 for name in STARTER if name.startswith("segments/"))
    assert segments == 2 and "two segments" in result.stdout and "never overwrites" in result.stdout


def test_the_starter_validates(tmp_path: Path) -> None:
    scaffold_project(tmp_path)
    result = revseg("validate", "--project-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: 2 segments, 1 destination")
    assert (tmp_path / "warehouse.duckdb").is_file()  # seeded on first use


def test_deleting_the_database_reseeds_it_even_with_its_wal_left_behind(tmp_path: Path) -> None:
    """revseg leaves commits in ``warehouse.duckdb.wal`` (no checkpoint on close); a user who
    deletes only the database file to start over must get a fresh seeded one."""
    scaffold_project(tmp_path)
    first = revseg("sync", "--json", "--project-dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "warehouse.duckdb.wal").is_file()
    (tmp_path / "warehouse.duckdb").unlink()
    again = revseg("sync", "--json", "--project-dir", str(tmp_path))
    assert again.returncode == 0, again.stderr
    entered = {s["name"]: s["entered"] for s in json.loads(again.stdout)["segments"]}
    assert entered == {"big_spenders": 1, "cart_abandoners": 2}  # a fresh start: all enter again


def test_every_starter_segment_has_the_members_its_comments_promise(tmp_path: Path) -> None:
    scaffold_project(tmp_path)
    abandoners = members(tmp_path, "cart_abandoners")
    assert [m["id"] for m in abandoners] == ["1", "6"]
    assert abandoners[0]["traits"] == {"email": "ada@example.com", "first_name": "Ada", "ltv": 640}
    spenders = members(tmp_path, "big_spenders")
    assert spenders == [
        {
            "id": "5",
            "traits": {"email": "margaret@example.com", "first_name": "Margaret", "country": "US"},
        }
    ]


def test_the_starter_compiles_for_other_dialects(tmp_path: Path) -> None:
    scaffold_project(tmp_path)
    result = revseg(
        "compile", "cart_abandoners", "--dialect", "snowflake", "--project-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert "NOT EXISTS" in result.stdout


def test_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "segments").mkdir()
    mine = tmp_path / "segments" / "cart_abandoners.yml"
    mine.write_text("name: mine\n")
    with pytest.raises(UsageError, match=r"segments/cart_abandoners\.yml") as caught:
        scaffold_project(tmp_path)
    assert caught.value.exit_code == 2
    assert mine.read_text() == "name: mine\n"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "segments",
        "segments/cart_abandoners.yml",
    ]


def test_names_every_file_that_exists(tmp_path: Path) -> None:
    (tmp_path / "revseg.yml").write_text("name: mine\n")
    (tmp_path / "README.md").write_text("# mine\n")
    with pytest.raises(UsageError) as caught:
        scaffold_project(tmp_path)
    assert "revseg.yml" in str(caught.value) and "README.md" in str(caught.value)


def test_keeps_an_existing_gitignore(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("node_modules/\n")
    written = scaffold_project(tmp_path)
    assert ".gitignore" not in relative(written, tmp_path)
    assert (tmp_path / ".gitignore").read_text() == "node_modules/\n"


def test_refuses_a_file_as_the_directory(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("x")
    with pytest.raises(UsageError, match="it is a file"):
        scaffold_project(target)


@pytest.mark.parametrize(
    ("directory", "name"),
    [
        ("shop", "shop"),
        ("my-shop.v2", "my_shop_v2"),
        ("2026", "project_2026"),
        ("---", "my_project"),
    ],
)
def test_project_name_is_a_valid_name(directory: str, name: str) -> None:
    assert project_name(Path("/tmp") / directory) == name


# -- the first commands, as a new user types them ------------------------------------------
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["plan", "--select", "tag:retargetin"], "--select 'tag:retargetin' matches no segment (did you mean 'tag:retargeting'?)"),
        (["plan", "-s", "destination:local_fil"], "(did you mean 'destination:local_file'?)"),
        (["plan", "-s", "retargeting"], "(did you mean 'tag:retargeting'?)"),
        (["preview", "big_spender"], "unknown segment 'big_spender' (did you mean 'big_spenders'?)"),
        (["history", "cart_abandoner"], "unknown segment 'cart_abandoner' (did you mean 'cart_abandoners'?)"),
        (["preview", "big_spenders", "--as-of", "yesterday"], "Invalid value for '--as-of': 'yesterday' is not an ISO-8601"),
        (["sync", "--as-of", "2026-13-01"], "Invalid value for '--as-of': '2026-13-01' is not an ISO-8601"),
        (["synk"], "No such command 'synk' (did you mean 'sync'?)."),
    ],
)
def test_a_typo_says_what_was_meant_and_exits_2(tmp_path: Path, args: list[str], expected: str) -> None:
    scaffold_project(tmp_path)
    result = revseg(*args, "--project-dir", str(tmp_path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert "python -m" not in result.stderr  # usage lines name the command users type


def test_counts_read_as_english(tmp_path: Path) -> None:
    scaffold_project(tmp_path)
    plan = revseg("plan", "--project-dir", str(tmp_path))
    assert plan.returncode == 0, plan.stderr
    assert "big_spenders: 1 member (+1 entering, -0 leaving)" in plan.stdout.splitlines()
    assert "cart_abandoners: 2 members (+2 entering, -0 leaving)" in plan.stdout.splitlines()
    preview = revseg("preview", "big_spenders", "--project-dir", str(tmp_path))
    assert "1 of 1 member of big_spenders at " in preview.stderr


def test_tables_right_align_numbers_and_mark_cut_cells() -> None:
    from decimal import Decimal

    from revseg.cli.render import table

    lines = table(["id", "ltv", "name"], [["7", Decimal("1234.5"), "x" * 70], ["12", 3, None]]).splitlines()
    assert lines[0] == "id     ltv  " + "name".ljust(60).rstrip()
    assert lines[2] == "7   1234.5  " + "x" * 59 + "…"
    assert lines[3] == "12       3"


def test_the_wrong_directory_says_where_the_project_is(tmp_path: Path) -> None:
    scaffold_project(tmp_path / "myproj")
    inside = revseg("validate", cwd=tmp_path / "myproj" / "segments")
    assert inside.returncode == 2
    assert f"the project is in {tmp_path / 'myproj'}" in inside.stderr and "--project-dir .." in inside.stderr
    above = revseg("preview", "big_spenders", cwd=tmp_path)
    assert above.returncode == 2
    assert "projects below it: myproj" in above.stderr and "--project-dir myproj" in above.stderr
    missing = revseg("status", "--project-dir", "nowhere", cwd=tmp_path)
    assert missing.returncode == 2 and f"{tmp_path / 'nowhere'} does not exist" in missing.stderr


def test_history_json_rounds_seconds_as_sync_json_does(tmp_path: Path) -> None:
    scaffold_project(tmp_path)
    assert revseg("sync", "--json", "--project-dir", str(tmp_path)).returncode == 0
    result = revseg("history", "big_spenders", "--json", "--project-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    [run] = json.loads(result.stdout)["runs"]
    assert run["seconds"] == round(run["seconds"], 3) and run["members"] == 1
