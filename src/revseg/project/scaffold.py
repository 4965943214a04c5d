"""``revseg init DIR``: write a small, valid starter project.

The starter runs as written: its DuckDB target seeds a tiny sample of customers, events
and orders (timestamps relative to now) the first time any command opens it, so
``revseg validate``, ``revseg preview cart_abandoners`` and ``revseg sync`` work at once,
and every segment has members. Its segment files carry comments explaining the grammar.

Nothing is overwritten: if any file the starter would write already exists, UsageError
names it and nothing is written. The one exception is ``.gitignore``, which is written
only when the directory has none (an existing one is left as it is), so ``revseg init .``
works in a repository that already ignores other things.
"""

from __future__ import annotations

import re
from pathlib import Path

from revseg.errors import UsageError

__all__ = ["project_name", "scaffold_project"]

_NAME_CHARS = re.compile(r"[^A-Za-z0-9_]+")

_GITIGNORE = """\
# revseg: the local warehouse, delivered files, and the sandbox's pid and log
*.duckdb
*.duckdb.wal
/out/
.revseg/
"""

_README = """\
# {name}

A revseg project: customer segments defined in YAML, computed inside the warehouse, and
synced to destinations as deltas (who entered, who left).

```
revseg validate                      # check every file, against the warehouse's columns too
revseg preview cart_abandoners       # who is in a segment now (nothing is changed)
revseg plan                          # what the next sync would add and remove
revseg sync                          # compute, diff, deliver to out/segments.jsonl, commit
```

The `dev` target is a local DuckDB file, `warehouse.duckdb`, created and filled from
`seed/sample.sql` the first time a command opens it. Delete it to start over. Point a new
target in `revseg.yml` at your warehouse and the models at your tables when you are ready.
"""

_PROJECT = """\
# The project file. Every string value may use {{{{ var('NAME') }}}} (from vars: below) and
# {{{{ env_var('NAME') }}}} or {{{{ env_var('NAME', 'default') }}}} (a secret: never printed).
name: {name}
target: dev                      # the default target; --target NAME picks another

targets:
  dev:
    type: duckdb                 # duckdb | postgres
    path: warehouse.duckdb       # relative to this directory
    seed: [seed/sample.sql]      # run once, when warehouse.duckdb does not exist yet
  # prod:
  #   type: postgres
  #   host: db.internal
  #   user: revseg
  #   password: "{{{{ env_var('REVSEG_PG_PASSWORD') }}}}"
  #   database: analytics
  #   schema: marts

state_schema: revseg             # revseg's own tables (snapshots, run history), in the warehouse
entity: customers                # the model segments select from, unless they say otherwise

models:
  customers:                     # the entity model: one row per customer
    table: customers             # or   sql: "select ... from ..."
    primary_key: customer_id
    updated_at: updated_at
  events:                        # an event model: one row per event
    table: events
    entity_key: customer_id      # the column that points at the entity
    timestamp: ts
    name: event_name             # the column holding the event's name
  orders:                        # a related model: many rows per customer
    table: orders
    entity_key: customer_id
    timestamp: ordered_at

vars:
  high_value: 100
"""

_SEED = """\
-- Sample data for the starter project. revseg runs this script once, when
-- warehouse.duckdb does not exist yet (targets.dev.seed in revseg.yml); delete
-- warehouse.duckdb to run it again. Timestamps are relative to now (as UTC), so the
-- segments' time windows have members. Replace it with your own tables when ready.

CREATE TEMP MACRO minutes_ago(m) AS
    date_trunc('second', now() AT TIME ZONE 'UTC') - to_minutes(CAST(m AS BIGINT));

CREATE TABLE customers (
    customer_id INTEGER PRIMARY KEY,
    email VARCHAR,
    phone VARCHAR,
    first_name VARCHAR,
    country VARCHAR,
    lifetime_value DECIMAL(10, 2),
    updated_at TIMESTAMP
);

INSERT INTO customers VALUES
    (1, 'ada@example.com',      '+14155550101', 'Ada',      'US', 640.00,  minutes_ago(90)),
    (2, 'grace@example.com',    '+14155550102', 'Grace',    'US', 220.00,  minutes_ago(170)),
    (3, 'alan@example.org',     NULL,           'Alan',     'GB', 90.00,   minutes_ago(120)),
    (4, 'linus@example.net',    '+358405550104', 'Linus',   'FI', 310.00,  minutes_ago(10)),
    (5, 'margaret@example.com', '+16175550105', 'Margaret', 'US', 1200.00, minutes_ago(4320)),
    (6, 'edsger@example.org',   NULL,           'Edsger',   'NL', 480.00,  minutes_ago(600)),
    (7, 'barbara@example.com',  '+12125550107', 'Barbara',  NULL, 150.00,  minutes_ago(20000)),
    (8, 'ken@example.net',      '+13125550108', 'Ken',      'US', 0.00,    minutes_ago(30));

CREATE TABLE events (
    customer_id INTEGER,
    event_name VARCHAR,
    ts TIMESTAMP,
    category VARCHAR
);

INSERT INTO events VALUES
    (1, 'product_viewed',  minutes_ago(100), 'shoes'),
    (1, 'added_to_cart',   minutes_ago(90),  'shoes'),       -- no order since: a cart abandoner
    (2, 'added_to_cart',   minutes_ago(180), 'outerwear'),
    (2, 'order_completed', minutes_ago(170), NULL),          -- bought it: not an abandoner
    (3, 'added_to_cart',   minutes_ago(120), 'books'),       -- lifetime value below high_value
    (4, 'added_to_cart',   minutes_ago(10),  'electronics'), -- too recent (older_than: 30m)
    (6, 'added_to_cart',   minutes_ago(600), 'home'),        -- a cart abandoner
    (8, 'page_viewed',     minutes_ago(30),  NULL);

CREATE TABLE orders (
    order_id INTEGER PRIMARY KEY,
    customer_id INTEGER,
    ordered_at TIMESTAMP,
    amount DECIMAL(10, 2)
);

INSERT INTO orders VALUES
    (1001, 5, minutes_ago(4320),   450.00),
    (1002, 5, minutes_ago(50000),  320.00),
    (1003, 2, minutes_ago(170),    220.00),
    (1004, 6, minutes_ago(80000),  480.00),
    (1005, 7, minutes_ago(20000),  150.00),
    (1006, 1, minutes_ago(200000), 640.00);
"""

_CART_ABANDONERS = """\
# One segment per file (a file may also hold a list of segments).
name: cart_abandoners
description: Added to cart in the last day, no order since, high value
tags: [retargeting]

# where: is a condition. The forms:
#   all: [c, ...] / any: [c, ...]        and / or
#   not: c                               the complement (a leaf on a NULL is false, so its not is true)
#   column: C, op: OP, value: V          a column of the entity model (customers)
#   event: NAME, within: D, older_than: D, where: [...], count: {op: OP, value: N}
#                                        the customer has such events (count defaults to >= 1)
#     followed_by / not_followed_by: {event: NAME, within: D, where: [...]}
#   aggregate: count|count_distinct|sum|avg|min|max, model: M, column: C, within: D,
#              where: [...], op: OP, value: V
#   segment: NAME                        a member of another segment at the same instant
#   sql: "EXPR"                          a boolean SQL expression over the entity's columns
# Operators: = != > >= < <= in not_in between is_null is_not_null contains starts_with ends_with
# Durations: 90s 30m 24h 7d 2w. A value may be {ago: 7d}: the evaluation instant minus 7 days.
where:
  all:
    - column: lifetime_value
      op: ">="
      value: "{{ var('high_value') }}"     # rendered to "100", compared as a number
    - event: added_to_cart
      within: 24h                          # in the last 24 hours ...
      older_than: 30m                      # ... but at least 30 minutes ago
      not_followed_by:
        event: order_completed             # and no order after it

traits:                                    # what is sent for each member: name -> column or SQL
  email: email
  first_name: first_name
  ltv: lifetime_value

syncs:
  - destination: local_file
    mode: mirror                           # add on enter, remove on exit, update changed traits
"""

_BIG_SPENDERS = """\
name: big_spenders
description: Spent 500 or more in the last 90 days and did not just abandon a cart

where:
  all:
    - aggregate: sum                       # over the customer's rows of a related model
      model: orders
      column: amount
      within: 90d
      op: ">="
      value: 500                           # sum over no rows is 0, so no orders: not a member
    - not:
        segment: cart_abandoners           # evaluated at the same instant, in dependency order

traits:
  email: email
  first_name: first_name
  country: "coalesce(country, 'unknown')"  # a trait may be a SQL expression

syncs:
  - destination: local_file
    mode: upsert                           # add and update, never remove
"""

_DESTINATION = """\
# A destination: where syncs deliver. The file type appends one JSON object per change.
name: local_file
type: file
options:
  path: out/segments.jsonl                 # relative to the project directory
"""


def project_name(directory: Path) -> str:
    """A valid project name from the directory's name (letters, digits, underscores).

    >>> project_name(Path("/tmp/my-shop.v2"))
    'my_shop_v2'
    >>> project_name(Path("/tmp/2026"))
    'project_2026'
    """
    name = _NAME_CHARS.sub("_", directory.name).strip("_")
    if not name:
        return "my_project"
    return name if (name[0].isalpha() or name[0] == "_") else f"project_{name}"


def _files(name: str) -> dict[str, str]:
    return {
        "revseg.yml": _PROJECT.format(name=name),
        "README.md": _README.format(name=name),
        "seed/sample.sql": _SEED,
        "segments/cart_abandoners.yml": _CART_ABANDONERS,
        "segments/big_spenders.yml": _BIG_SPENDERS,
        "destinations/local_file.yml": _DESTINATION,
    }


def scaffold_project(directory: Path) -> list[Path]:
    """Write a starter project into ``directory`` (created if missing); return the files written.

    Raises UsageError, before writing anything, when ``directory`` is a file or when any
    file of the starter already exists there.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"cannot create a project in {directory}: it is a file")
    files = _files(project_name(directory.resolve()))
    existing = [rel for rel in files if (directory / rel).exists()]
    if existing:
        listed = ", ".join(existing)
        raise UsageError(
            f"refusing to overwrite {listed} in {directory}: "
            "move them away or choose another directory"
        )
    written: list[Path] = []
    for rel, text in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        # "x": fail rather than overwrite a file that appeared since the check above
        with path.open("x", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        written.append(path)
    gitignore = directory / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(_GITIGNORE, encoding="utf-8", newline="\n")
        written.append(gitignore)
    return sorted(written)
