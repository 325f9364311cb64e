"""Deprecated alias: the job model is :mod:`atoll.service.jobs.model`, the run request
:mod:`atoll.service.http.run_request`."""

from atoll._moved import forward

__getattr__ = forward(__name__, "atoll.service.jobs.model", "atoll.service.http.run_request",
                      "atoll.service.http.errors", renamed={"RequestError": "ApiError"})
