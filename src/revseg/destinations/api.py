"""Base class of destinations that deliver over HTTP through the shared core.

It owns the destination's one :class:`~revseg.destinations.http.HttpCore` for the run
(created on ``open``, closed on ``close``) and gathers the options marked secret, so a
concrete API destination only says where to send, which headers authenticate, and, if its
error bodies need it, how to classify a response.
"""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from revseg.destinations.base import DeliverySettings, Destination, DestinationOptions
from revseg.destinations.http import DEFAULT_TIMEOUT, HttpCore, Verdict


class HttpDestination(Destination):
    """A destination that talks HTTP; subclasses implement ``send`` with ``self.http``."""

    def __init__(self, name: str, options: DestinationOptions, settings: DeliverySettings) -> None:
        super().__init__(name, options, settings)
        self._http: HttpCore | None = None

    @property
    def http(self) -> HttpCore:
        """The run's HTTP core, created on first use if ``open`` was not called."""
        if self._http is None:
            self._http = self.make_http()
        return self._http

    def open(self) -> None:
        self.http  # noqa: B018 - creates the client

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def make_http(self) -> HttpCore:
        return HttpCore.from_settings(
            self.settings,
            name=self.name,
            base_url=self.base_url(),
            timeout=self.timeout(),
            headers=self.headers(),
            secrets=self.secret_values(),
            classify=self.classify_response,
        )

    # -- hooks -----------------------------------------------------------------------
    def base_url(self) -> str:
        """The API root; by default ``options.base_url`` when the options have one."""
        return str(getattr(self.options, "base_url", None) or "")

    def timeout(self) -> float:
        """Seconds allowed for each phase (connect, read, write) of one attempt."""
        return DEFAULT_TIMEOUT

    def headers(self) -> dict[str, str]:
        """Headers on every request (authentication); logged with credentials redacted."""
        return {}

    def secret_values(self) -> list[str]:
        """Values never to appear in logs or errors: every ``SecretStr`` option by default."""
        values = (getattr(self.options, field) for field in type(self.options).model_fields)
        return [v.get_secret_value() for v in values if isinstance(v, SecretStr)]

    def classify_response(self, response: httpx.Response) -> Verdict | None:
        """API-specific meaning of a response; None applies the default status rules."""
        return None
