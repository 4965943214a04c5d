"""Redaction of env_var values (SPEC 1): blanked everywhere, without garbling the output."""

from __future__ import annotations

import json

from revseg.cli.render import to_json
from revseg.secrets import Secrets


def secrets(*values: str) -> Secrets:
    out = Secrets()
    for value in values:
        out.add(value)
    return out


def test_long_secrets_are_blanked_wherever_they_occur() -> None:
    s = secrets("sk_live_0123456789")
    assert s.redact("token=sk_live_0123456789x, again sk_live_0123456789") == "token=***x, again ***"


def test_short_secrets_only_where_they_stand_alone() -> None:
    """A port, a threshold or a target name from env_var: blanked as a word, never inside one."""
    s = secrets("120", "dev")
    assert s.redact("120 members in dev; 1200 exited; device devops dev-1") == "*** members in ***; 1200 exited; device devops ***-1"
    assert s.redact("host:120/dev") == "host:***/***"


def test_json_output_stays_json() -> None:
    """Numbers are the run's own counts: with a secret '120', "exited": 120 stays a number."""
    s = secrets("120", "s3cr3t-token")
    report = {"segments": [{"name": "vip", "exited": 120, "members": 1200}],
              "rejections": [{"id": "c_120", "reason": "bad key s3cr3t-token (120)"}], "120": True}
    text = to_json(s.redact_data(report))
    data = json.loads(text)
    assert data["segments"][0] == {"name": "vip", "exited": 120, "members": 1200}
    assert data["rejections"] == [{"id": "c_120", "reason": "bad key *** (***)"}]
    assert data["***"] is True
    assert "s3cr3t" not in text


def test_nothing_to_hide_leaves_data_as_it_is() -> None:
    value = {"a": [1, "x"]}
    assert Secrets().redact_data(value) is value
