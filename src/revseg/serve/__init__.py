"""``revseg serve``: ``revseg run`` plus an HTTP API (SPEC 5.1).

Modules, in the order a request meets them:

- :mod:`~revseg.serve.service` — lifecycle: scheduler thread, HTTP server, stop on SIGTERM;
- :mod:`~revseg.serve.http` — stdlib HTTP/1.1 server, bodies and their size limits;
- :mod:`~revseg.serve.app` — routes, auth (:mod:`~revseg.serve.auth`), connection pool;
- :mod:`~revseg.serve.reads` — membership lookups over the state tables;
- :mod:`~revseg.serve.ingest` — Segment-compatible track/identify/batch
  (values converted by :mod:`~revseg.serve.convert`);
- :mod:`~revseg.serve.metrics` — Prometheus text format.
"""

from __future__ import annotations

from revseg.serve.service import ServeOptions, Service

__all__ = ["ServeOptions", "Service"]
