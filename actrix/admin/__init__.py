"""The admin control API and console (issue 14): ``/admin/api/v1`` and ``/admin/``.

``store`` (tokens, audit), ``sessions`` (console logins, login limiter),
``api`` (the Klein routes) with ``realm_routes`` and ``live_routes``,
``series`` (the metrics rings), ``console`` (static files) and ``service``
(assembly and background work). It imports no other service package; what it
steers comes in through the protocols of ``ports``.
"""
