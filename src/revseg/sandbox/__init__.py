"""Local stand-ins for the services revseg delivers to, for demos and tests.

``revseg sandbox`` runs :class:`~revseg.sandbox.webhook.WebhookReceiver` on 127.0.0.1 so a
project can sync to a ``webhook`` destination without any account anywhere, and, in the same
process, an emulator of every API in :data:`revseg.sandbox.catalog.APIS` (their ports and
the destination options that reach them are listed there); the test suite uses the same
receiver and emulators in-process and as subprocesses (crash tests).
"""
