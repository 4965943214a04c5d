"""The Data Manager API path of ``google_ads`` (the default): ``audienceMembers:ingest``
and ``audienceMembers:remove`` on ``https://datamanager.googleapis.com/v1``.

A request names one destination (the operating Google Ads account, the user list as
``productDestinationId``, and the manager as ``loginAccount`` when ``login_customer_id`` is
set) and at most 10,000 audience members, each a ``userData`` of at most 10 identifiers,
hex-encoded SHA-256 digests. Ingests also carry request-level consent and acceptance of
the Customer Match terms of service; removes carry neither.

A request is all or nothing: a 400 whose ``BadRequest`` violations each name an audience
member (``audience_members[i]``, with a Data Manager ``ErrorReason``) rejects just those
members, and the rest is sent again without them. Each round drops at least one member,
so the loop ends. Success answers ``{"requestId": ...}``, logged at debug level.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from revseg.destinations.google_ads_errors import member_violations, parse_error
from revseg.destinations.google_ads_identifiers import Member, UserIds
from revseg.destinations.http import HttpCore
from revseg.destinations.redact import redact_text
from revseg.errors import DeliveryError

log = logging.getLogger("revseg.destinations.google_ads")

#: audience members per request, identifiers per member.
MAX_MEMBERS = 10_000
MAX_MEMBER_IDENTIFIERS = 10
CONSENT = {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"}


def chunks(items: Sequence[Member], size: int) -> Iterator[list[Member]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def audience_member(ids: UserIds) -> dict[str, Any]:
    """One ``AudienceMember`` with ``userData``: one ``UserIdentifier`` per identifier."""
    identifiers: list[dict[str, Any]] = [{"emailAddress": e} for e in ids.emails]
    identifiers += [{"phoneNumber": p} for p in ids.phones]
    if ids.address is not None:
        a = ids.address
        address = {
            "givenName": a.first_name,
            "familyName": a.last_name,
            "regionCode": a.country,
            "postalCode": a.postal_code,
        }
        identifiers.append({"address": address})
    return {"userData": {"userIdentifiers": identifiers[:MAX_MEMBER_IDENTIFIERS]}}


class DataManager:
    """Sends one batch's removes, then its adds, to one Customer Match list."""

    def __init__(
        self,
        http: HttpCore,
        customer_id: str,
        user_list_id: str,
        login_customer_id: str | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self.http = http
        self.destination: dict[str, Any] = {
            "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": customer_id},
            "productDestinationId": user_list_id,
        }
        if login_customer_id:
            self.destination["loginAccount"] = {
                "accountType": "GOOGLE_ADS",
                "accountId": login_customer_id,
            }
        self.secrets = tuple(secrets)

    def send(self, *, adds: Sequence[Member], removes: Sequence[Member]) -> dict[str, str]:
        """Removes first, as the runner orders a batch; return the rejected records' reasons."""
        rejected = self._post("remove", removes)
        rejected.update(self._post("ingest", adds))
        return rejected

    def body(self, method: str, members: Sequence[Member]) -> dict[str, Any]:
        """The exact request body, fields in the reference's order."""
        body: dict[str, Any] = {
            "destinations": [self.destination],
            "audienceMembers": [audience_member(m.ids) for m in members],
        }
        if method == "ingest":
            body["consent"] = dict(CONSENT)
        body["validateOnly"] = False
        body["encoding"] = "HEX"
        if method == "ingest":
            body["termsOfService"] = {"customerMatchTermsOfServiceStatus": "ACCEPTED"}
        return body

    def _post(self, method: str, members: Sequence[Member]) -> dict[str, str]:
        rejected: dict[str, str] = {}
        for pending in chunks(members, MAX_MEMBERS):
            while pending:
                path = f"/audienceMembers:{method}"
                response = self.http.request("POST", path, json=self.body(method, pending))
                if response.is_success:
                    log.debug(
                        "audienceMembers:%s of %d members: %s",
                        method,
                        len(pending),
                        response.text[:100],
                    )
                    break
                error = parse_error(response)
                bad = member_violations(error) if error is not None else None
                if not bad or any(i >= len(pending) for i in bad):
                    shown = (
                        error.describe() if error is not None else f"HTTP {response.status_code}"
                    )
                    raise DeliveryError(
                        redact_text(f"audienceMembers:{method}: {shown}", self.secrets)
                    )
                rejected.update({pending[i].id: reason for i, reason in bad.items()})
                pending = [m for i, m in enumerate(pending) if i not in bad]
        return rejected
