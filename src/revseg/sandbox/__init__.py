"""Local stand-ins for the services revseg delivers to, for demos and tests.

``revseg sandbox`` runs :class:`~revseg.sandbox.webhook.WebhookReceiver` on 127.0.0.1 so a
project can sync to a ``webhook`` destination without any account anywhere; the test suite
uses the same receiver in-process and as a subprocess (crash tests).
"""
