"""The service over HTTP: blueprints, the run request parsed at the edge, and the one table from domain
errors to answers.

================  ==========================================================================
``errors``        :class:`~atoll.service.http.errors.ApiError` (the one refusal), the table
                  ``STATUSES`` and the JSON error handlers
``run_request``   ``POST /pipelines/<name>``'s body, parsed and checked once
``pipelines``     ``GET /pipelines``, ``POST /pipelines/<name>`` (sync calls; jobs go to ``jobs``)
``jobs``          ``/jobs`` routes over the job system (:mod:`atoll.service.jobs`)
``health``        ``GET /health``; ``probes``: ``/livez``, ``/readyz``
``metrics``       requests counted and timed, ``GET /metrics``
``openapi``       ``GET /openapi.json``; ``ui``: ``GET /ui``
================  ==========================================================================
"""
