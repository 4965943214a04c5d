"""An emulator of Twilio's create-Message endpoint, for tests and the sandbox.

It checks requests as ``destinations/twilio.md`` and Twilio's own OpenAPI document
(``schemas/twilio.json``) describe them: HTTP basic auth with the account SID and auth
token; the account in the path; a form-encoded body typed by ``CreateMessageRequest``
(form fields are strings on the wire) and validated against it; the operation's
``x-twilio.conditional`` rules (one of ``From``/``MessagingServiceSid``, one of
``Body``/``MediaUrl``/``ContentSid``); an E.164 ``To``; a sender the account owns; a body
of at most 1,600 characters. It answers ``201`` with the message resource, and errors in
Twilio's shape: ``{"code", "message", "more_info", "status"}`` (messages echo the number,
as Twilio's do; codes and shapes live in :mod:`revseg.sandbox.twilio_wire`).

Written from the doc, independently of :mod:`revseg.destinations.twilio`::

    with TwilioEmulator() as emu:
        emu.fail_number("+14155550100", 21610)   # unsubscribed
        emu.drop_next()                          # accept a message, then drop the connection
        ... sync with base_url=emu.url, account_sid=emu.account_sid, auth_token=emu.auth_token ...
        assert [m["to"] for m in emu.messages()] == [...]

As a process: ``python -m revseg.sandbox.twilio_emulator --port N [--delay S]``
(``GET /_messages`` lists the messages created, ``GET /_stats`` counts them).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import re
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

from revseg.sandbox.emulator import Emulator, Fault, Reply, Request, reply, serve_main
from revseg.sandbox.openapi import form_values, load_spec, request_schema, validate
from revseg.sandbox.twilio_wire import (
    ACCOUNT_SID,
    API,
    AUTH_TOKEN,
    E164,
    MAX_BODY,
    MESSAGES,
    NUMBERS,
    SERVICE_SID,
    TwilioError,
    error_body,
    message_resource,
)

SPEC_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
ROUTE = re.compile(r"/2010-04-01/Accounts/([^/]+)/Messages\.json")


class TwilioEmulator(Emulator):
    """``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` of one account."""

    service = "twilio"

    def __init__(
        self,
        *,
        port: int = 0,
        account_sid: str = ACCOUNT_SID,
        auth_token: str = AUTH_TOKEN,
        messaging_service_sid: str = SERVICE_SID,
        numbers: Sequence[str] = NUMBERS,
        delay: float = 0.0,
    ) -> None:
        super().__init__(port=port)
        self.account_sid, self.auth_token = account_sid, auth_token
        self.messaging_service_sid = messaging_service_sid
        self.numbers = tuple(numbers)
        self.delay = delay  # seconds before each API request is processed
        self.bad: dict[str, int] = {}  # To -> error code answered for it
        self._messages: list[dict[str, Any]] = []
        self._drops = 0
        self._local = threading.local()
        self._spec = load_spec("twilio")
        self._schema = request_schema(
            self._spec, SPEC_PATH, "post", "application/x-www-form-urlencoded"
        )
        operation = self._spec["paths"][SPEC_PATH]["post"]
        self._conditional: list[list[str]] = operation["x-twilio"]["conditional"]

    @property
    def url(self) -> str:
        """The ``base_url`` a destination uses (Twilio's root, version path included)."""
        return self.root + API

    # -- programming and inspecting ---------------------------------------------------
    def messages(self) -> list[dict[str, Any]]:
        """Every message created so far (the resources answered), in order."""
        with self.lock:
            return [dict(m) for m in self._messages]

    def forms(self) -> list[dict[str, list[str]]]:
        """The form of every API request received (answered or not), in order."""
        return [parse_qs(e.request.body.decode(), keep_blank_values=True) for e in self.requests()]

    def fail_number(self, number: str, code: int) -> None:
        """Answer every message to ``number`` with Twilio error ``code`` (HTTP 400)."""
        with self.lock:
            self.bad[number] = code

    def fail_next(
        self, n: int = 1, *, status: int = 500, delay: float = 0.0, retry_after: float | None = None
    ) -> None:
        """Answer the next ``n`` requests with ``status`` in Twilio's error shape (nothing sent)."""
        code = {429: 20429, 401: 20003, 404: 20404, 503: 20503}.get(status, 20500)
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        body = error_body(status, code, MESSAGES[code].format(value="", to=""))
        self.inject(Fault(status, body, headers, delay), n)

    def delay_next(self, seconds: float, n: int = 1) -> None:
        """Process the next ``n`` requests only after ``seconds`` (the message is still sent)."""
        self.inject(Fault(None, delay=seconds), n)

    def drop_next(self, n: int = 1) -> None:
        """Accept the next ``n`` messages, then close the connection without answering."""
        with self.lock:
            self._drops += n

    # -- the API ---------------------------------------------------------------------
    def dispatch(self, request: Request) -> Reply:
        self._local.drop = False
        answer = super().dispatch(request)
        if self._local.drop:  # the message exists; its answer is lost on the way back
            raise ConnectionAbortedError("emulated: connection dropped after accepting")
        return answer

    def handle(self, request: Request) -> Reply:
        if self.delay:
            self.stopping.wait(self.delay)
        try:
            message = self._create(request)
        except TwilioError as exc:
            return reply(exc.status, error_body(exc.status, exc.code, str(exc)))
        with self.lock:
            if self._drops > 0:
                self._drops -= 1
                self._local.drop = True
        return reply(201, message)

    def control(self, request: Request) -> Reply:
        if request.method == "GET" and request.path == "/_messages":
            return reply(200, {"messages": self.messages()})
        if request.method == "GET" and request.path == "/_stats":
            with self.lock:
                return reply(
                    200, {"messages": len(self._messages), "requests": len(self.exchanges)}
                )
        return super().control(request)

    def _authenticate(self, request: Request) -> None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = password = ""
        if not (
            scheme.lower() == "basic"
            and hmac.compare_digest(user.encode(), self.account_sid.encode())
            and hmac.compare_digest(password.encode(), self.auth_token.encode())
        ):
            raise TwilioError(401, 20003)

    def _create(self, request: Request) -> dict[str, Any]:
        match = ROUTE.fullmatch(request.path)
        if match is None or request.method != "POST":
            raise TwilioError(404, 20404, value=request.path)
        self._authenticate(request)
        if match.group(1) != self.account_sid:
            raise TwilioError(404, 20404, value=request.path)
        form = self._form(request)
        to = form["To"]
        with self.lock:
            code = self.bad.get(to)
        if code is not None:
            raise TwilioError(400, code, to=to)
        return self._store(form)

    def _form(self, request: Request) -> dict[str, Any]:
        """The typed, validated form; raises the error Twilio answers for the first problem."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        text = (
            request.body.decode("utf-8", "replace")
            if kind == "application/x-www-form-urlencoded"
            else ""
        )
        form = form_values(parse_qs(text, keep_blank_values=True), self._schema, self._spec)
        if not form.get("To"):
            raise TwilioError(400, 21604)
        present = {name for name, value in form.items() if value not in ("", [], None)}
        for group, code in zip(self._conditional, (21603, 21619), strict=True):
            if not present & {_pascal(name) for name in group}:
                raise TwilioError(400, code)
        for where, _message in validate(form, self._schema, self._spec):
            field = where.split(".")[0].split("[")[0]
            if field == "To":
                raise TwilioError(400, 21211, to=str(form["To"]))
            if field == "MessagingServiceSid":
                raise TwilioError(400, 21701, value=str(form[field]))
            raise TwilioError(400, 20001, value=field)
        if not E164.fullmatch(form["To"]):
            raise TwilioError(400, 21211, to=form["To"])
        if form.get("From") and form["From"] not in self.numbers:
            raise TwilioError(400, 21606, value=form["From"])
        if (
            form.get("MessagingServiceSid")
            and form["MessagingServiceSid"] != self.messaging_service_sid
        ):
            raise TwilioError(400, 21701, value=form["MessagingServiceSid"])
        if len(form.get("Body") or "") > MAX_BODY:
            raise TwilioError(400, 21617)
        callback = str(form.get("StatusCallback") or "")
        if callback and not re.match(r"https?://[^/\s]+", callback):
            raise TwilioError(400, 21609)
        return form

    def _store(self, form: dict[str, Any]) -> dict[str, Any]:
        message = message_resource(self.account_sid, form)
        with self.lock:
            self._messages.append(message)
        return message


def _pascal(name: str) -> str:
    """``messaging_service_sid`` -> ``MessagingServiceSid`` (the conditional rules' spelling)."""
    return "".join(part.capitalize() for part in name.split("_"))


def main(argv: Sequence[str] | None = None) -> None:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--account-sid", default=ACCOUNT_SID)
        parser.add_argument("--auth-token", default=AUTH_TOKEN)
        parser.add_argument("--messaging-service-sid", default=SERVICE_SID)
        parser.add_argument("--number", action="append", dest="numbers", help="an owned sender")
        parser.add_argument("--delay", type=float, default=0.0, help="seconds per API request")

    serve_main(
        lambda a: TwilioEmulator(
            port=a.port,
            account_sid=a.account_sid,
            auth_token=a.auth_token,
            messaging_service_sid=a.messaging_service_sid,
            numbers=a.numbers or NUMBERS,
            delay=a.delay,
        ),
        "Emulate Twilio's create-Message API on 127.0.0.1.",
        argv,
        configure,
    )


if __name__ == "__main__":
    main()
