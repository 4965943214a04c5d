"""The APIs ``revseg sandbox`` serves, one server each, all in the one sandbox process.

========== ====== =================== ======================================================
API        port   destination type    what to write in the destination's ``options``
========== ====== =================== ======================================================
webhook    8471   ``webhook``         ``url: http://127.0.0.1:8471/hooks``
meta       8472   ``meta``            base_url (``/v26.0``), audience_id, access_token
linkedin   8473   ``linkedin``        base_url (``/rest``), segment_id, access_token
google_ads 8474   ``google_ads``      base_url (``/v1``, Data Manager API), customer_id,
                                      user_list_id, access_token
iterable   8475   ``iterable``        base_url, list_id, api_key
mailchimp  8476   ``mailchimp``       base_url (``/3.0``), list_id, api_key
sendgrid   8477   ``sendgrid``        base_url, list_id, api_key
braze      8478   ``braze``           base_url, api_key, subscription_group_id
klaviyo    8479   ``klaviyo``         base_url, list_id, api_key
twilio     8480   ``twilio``          base_url (``/2010-04-01``), account_sid, auth_token,
                                      messaging_service_sid
========== ====== =================== ======================================================

The ports are offsets from the webhook's (``--port P`` puts the APIs on ``P+1`` to ``P+9``);
with ``--port 0`` every server takes a free port (``revseg sandbox --status`` lists them).
The ids and credentials are each emulator's defaults: public, fixed, good for the sandbox
only. :func:`describe` reads them from a running emulator, so they never drift from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Server(Protocol):
    """What the sandbox needs of an emulator."""

    @property
    def port(self) -> int: ...

    def start(self) -> Any: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class Api:
    """One sandboxed API: how to start its emulator and what a destination must say to use it."""

    name: str
    #: the destination ``type`` that talks to it
    type: str
    #: its port is the webhook's port plus this (0 when the webhook's is 0)
    offset: int
    #: ``make(port)``: the emulator, bound (not yet serving)
    make: Callable[[int], Server]
    #: ``options(emulator)``: the destination options that reach it (base_url and credentials)
    options: Callable[[Any], dict[str, Any]]

    def port(self, webhook_port: int) -> int:
        return webhook_port + self.offset if webhook_port else 0


# Emulators are imported when started: `revseg sandbox --status` needs none of them.
def _meta(port: int) -> Server:
    from revseg.sandbox.meta_emulator import MetaEmulator

    return MetaEmulator(port=port)


def _linkedin(port: int) -> Server:
    from revseg.sandbox.linkedin_emulator import LinkedInEmulator

    return LinkedInEmulator(port=port)


def _google_ads(port: int) -> Server:
    from revseg.sandbox.google_ads_emulator import GoogleAdsEmulator

    return GoogleAdsEmulator(port=port)


def _iterable(port: int) -> Server:
    from revseg.sandbox.iterable_emulator import IterableEmulator

    return IterableEmulator(port=port)


def _mailchimp(port: int) -> Server:
    from revseg.sandbox.mailchimp_emulator import MailchimpEmulator

    return MailchimpEmulator(port=port)


def _sendgrid(port: int) -> Server:
    from revseg.sandbox.sendgrid_emulator import SendgridEmulator

    return SendgridEmulator(port=port)


def _braze(port: int) -> Server:
    from revseg.sandbox.braze_emulator import BrazeEmulator

    return BrazeEmulator(port=port)


def _klaviyo(port: int) -> Server:
    from revseg.sandbox.klaviyo_emulator import KlaviyoEmulator

    return KlaviyoEmulator(port=port)


def _twilio(port: int) -> Server:
    from revseg.sandbox.twilio_emulator import TwilioEmulator

    return TwilioEmulator(port=port)


#: the Google Ads customer (10 digits) and user list the sandbox's options name; the emulator
#: accepts any customer and holds every numeric user list id
GOOGLE_ADS_CUSTOMER_ID = "1234567890"
GOOGLE_ADS_USER_LIST_ID = "1001"

APIS: tuple[Api, ...] = (
    Api(
        "meta",
        "meta",
        1,
        _meta,
        lambda e: {
            "base_url": e.url,
            "audience_id": next(iter(e.audiences)),
            "access_token": e.access_token,
        },
    ),
    Api(
        "linkedin",
        "linkedin",
        2,
        _linkedin,
        lambda e: {
            "base_url": e.url,
            "segment_id": next(iter(e.segments)),
            "access_token": e.access_token,
        },
    ),
    Api(
        "google_ads",
        "google_ads",
        3,
        _google_ads,
        lambda e: {
            "base_url": e.data_manager_url,
            "customer_id": GOOGLE_ADS_CUSTOMER_ID,
            "user_list_id": GOOGLE_ADS_USER_LIST_ID,
            "access_token": e.access_token,
        },
    ),
    Api(
        "iterable",
        "iterable",
        4,
        _iterable,
        lambda e: {"base_url": e.url, "list_id": next(iter(e.lists)), "api_key": e.api_key},
    ),
    Api(
        "mailchimp",
        "mailchimp",
        5,
        _mailchimp,
        lambda e: {"base_url": e.url, "list_id": next(iter(e.lists)), "api_key": e.api_key},
    ),
    Api(
        "sendgrid",
        "sendgrid",
        6,
        _sendgrid,
        lambda e: {"base_url": e.url, "list_id": _sendgrid_list(), "api_key": e.api_key},
    ),
    Api(
        "braze",
        "braze",
        7,
        _braze,
        lambda e: {
            "base_url": e.url,
            "api_key": e.api_key,
            "subscription_group_id": sorted(e.groups)[0],
        },
    ),
    Api(
        "klaviyo",
        "klaviyo",
        8,
        _klaviyo,
        lambda e: {"base_url": e.url, "list_id": _klaviyo_list(), "api_key": e.api_key},
    ),
    Api(
        "twilio",
        "twilio",
        9,
        _twilio,
        lambda e: {
            "base_url": e.url,
            "account_sid": e.account_sid,
            "auth_token": e.auth_token,
            "messaging_service_sid": e.messaging_service_sid,
        },
    ),
)


def _sendgrid_list() -> str:
    from revseg.sandbox.sendgrid_store import DEFAULT_LIST

    return DEFAULT_LIST


def _klaviyo_list() -> str:
    from revseg.sandbox.klaviyo_store import DEFAULT_LIST

    return DEFAULT_LIST


def describe(api: Api, emulator: Server) -> dict[str, Any]:
    """What ``sandbox.json`` records of a running API: name, type, port, url and options."""
    options = api.options(emulator)
    return {
        "name": api.name,
        "type": api.type,
        "port": emulator.port,
        "url": options["base_url"],
        "options": options,
    }


__all__ = ["APIS", "Api", "describe"]
