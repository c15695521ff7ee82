"""What the three HTTP services (manager, webserver, terminal server) share: one kit.

* :mod:`~webterm.service.errors`: the one way to refuse a request (raise
  :class:`~webterm.service.errors.Refusal`) and the one JSON error body (pure);
* :mod:`~webterm.service.answers`: JSON answers, request bodies and the one error
  handler for the Quart apps (manager, webserver);
* :mod:`~webterm.service.hostguard`: the wildcard-host (DNS-rebinding) guard each
  service applies (the rule itself is :mod:`webterm.hosts`);
* :mod:`~webterm.service.health`: ``/healthz``, ``/readyz`` and ``/metrics``;
* :mod:`~webterm.service.hypercorn`: the Hypercorn configuration and serving.

The terminal server is a raw h11 server, not Quart: it uses the pure parts (the error
body, the host guard, the health body) and answers through :mod:`webterm.pty.http`.
"""
