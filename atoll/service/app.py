"""The service: :class:`Atoll` holds the registry of pipelines; ``create_app()`` builds the Flask app.

>>> from atoll import Pipeline
>>> service = Atoll()
>>> service.register_pipeline("/double", Pipeline().map(lambda x: 2 * x))
>>> service.run_pipeline("double", [1, 2], {})
[2, 4]
>>> app = service.create_app()
>>> app.test_client().post("/pipelines/double", json={"data": [3]}).get_json()
{'results': [6]}
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from atoll.config import Config, load_config
from atoll.dead_letters import ErrorPolicy, TooManyErrors, policy_of
from atoll.executors import Executor, LocalExecutor, SerialExecutor
from atoll.parallelism import effective_n_jobs
from atoll.pipeline import Pipeline
from atoll.service.errors import RegistrationError, UnknownPipeline
from atoll.service.jobs.retries import InvalidRetryPolicy, RetryPolicy

if TYPE_CHECKING:  # the web app's types: a worker builds a service without loading Flask
    from flask import Blueprint, Flask

    from atoll.service.datasets.store import DatasetStore
    from atoll.service.http.run_request import RunRequest
    from atoll.service.jobs.system import JobSystem

__all__ = ["Atoll", "Registered", "RegistrationError", "UnknownPipeline", "HealthCheck", "health_word"]

log = logging.getLogger("atoll.service")

_NAME = re.compile(r"^[A-Za-z0-9_.~-]+$")

#: a health check returns (name, ok, detail, required)
HealthCheck = Callable[[], tuple[str, bool, dict, bool]]


def health_word(healthy: bool, checks: dict[str, dict]) -> str:
    """Return the one word for a health report, as ``/health`` and ``atoll status`` say it: ``ok``
    (every check passed), ``degraded`` (only checks that are not required failed) or ``down``.

    >>> health_word(True, {"broker": {"ok": True}}), health_word(True, {"workers": {"ok": False}})
    ('ok', 'degraded')
    >>> health_word(False, {"broker": {"ok": False}})
    'down'
    """
    if all(check["ok"] for check in checks.values()):
        return "ok"
    return "degraded" if healthy else "down"


class _ExecutorFactory:
    """Return the registered pipeline's executor, built on first use and reused afterwards."""

    def __init__(self, build: Callable[[], Executor], description: str):
        self._build = build
        self.description = description
        self._executor: Executor | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Executor:
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = self._build()
        return self._executor

    def __repr__(self) -> str:
        return f"<executor {self.description}>"


@dataclass(frozen=True)
class Registered:
    """A pipeline as the service knows it: its name, endpoint, the pipeline and its executor factory."""

    name: str
    endpoint: str
    pipeline: Pipeline
    executor: Callable[[], Executor] = field(repr=False)
    #: how its asynchronous jobs are retried (see :mod:`atoll.service.jobs.retries`), or None
    retries: RetryPolicy | None = None
    #: what its runs do with failing elements (see :mod:`atoll.dead_letters`) unless a call says; None: fail
    on_error: ErrorPolicy | None = None

    def describe(self) -> dict:
        """Return the JSON form listed by ``GET /pipelines`` (``graph`` is :meth:`~atoll.Pipeline.graph`)."""
        return {"name": self.name, "endpoint": self.endpoint, "stages": self.pipeline.describe(),
                "graph": self.pipeline.graph(),
                "kwargs": list(self.pipeline.expected_kwargs), "sig": self.pipeline.sig,
                "executor": getattr(self.executor, "description", "custom"),
                "retries": self.retries.describe() if self.retries is not None else None,
                "on_error": self.on_error.to_dict() if self.on_error is not None else None}


def _spark(config: Config) -> Callable[[], Executor]:
    def build() -> Executor:
        from atoll.executors.spark import SparkExecutor

        return SparkExecutor.from_config(config)

    return build


def _local(n_jobs: int) -> Callable[[], Executor]:
    return lambda: SerialExecutor() if n_jobs == 1 else LocalExecutor(n_jobs=n_jobs)


@functools.cache
def _run_observer() -> Callable[[str, str, float], None] | None:
    """Return the metrics' run recorder, or None without prometheus_client (part of the service extra).

    Looked up once: a failing import searched the disk again on every call.
    """
    try:
        from atoll.service.metrics import observe_run
    except ImportError:
        return None
    return observe_run


def _observe_failures(name: str, by_stage: Mapping[str, int]) -> None:
    """Count a run's failing elements per stage in the metrics, when they are available."""
    if by_stage and _run_observer() is not None:
        from atoll.service.metrics import observe_failed_elements

        observe_failed_elements(name, by_stage)


def _observe_run(name: str, registered: Registered, seconds: float) -> None:
    """Record a run in the metrics, when they are available."""
    observe = _run_observer()
    if observe is not None:
        observe(name, getattr(registered.executor, "description", "custom"), seconds)


class Atoll:
    """A pipeline service: register pipelines, then ``create_app()`` gives the Flask app to serve."""

    def __init__(self, config: Config | None = None):
        self.config: Config = config if config is not None else load_config()
        self.pipelines: dict[str, Registered] = {}
        #: callables returning (name, ok, detail, required); GET /health reports them all
        self.health_checks: list[HealthCheck] = [self._service_check]
        #: extra blueprints that create_app() registers after its own
        self.blueprints: list[Blueprint] = []
        self._apps = 0
        #: the service's job system, built once per process on first use (see job_system)
        self._job_system: JobSystem | None = None
        self._job_system_lock = threading.Lock()
        #: the dataset store, built on first use (see datasets)
        self._datasets: DatasetStore | None = None
        logging.getLogger("atoll").setLevel(self.config.log_level)

    def __repr__(self) -> str:
        return f"Atoll(pipelines={sorted(self.pipelines)})"

    # -- registry ----------------------------------------------------------------------------

    def register_pipeline(self, endpoint: str, pipeline: Pipeline, executor: Executor | str | None = None,
                          n_jobs: int | None = None, distributed: bool = False,
                          retries: RetryPolicy | Mapping[str, Any] | None = None,
                          on_error: str | None = None, max_errors: int | float | None = None) -> None:
        """Register ``pipeline`` at ``/pipelines/<name>`` where name is ``endpoint`` without slashes.

        ``executor`` (an Executor or "serial"/"local"/"spark"), ``n_jobs`` (local processes) or
        ``distributed=True`` (Spark) choose how it runs; none of them means ``default_executor``.
        ``retries`` (a :class:`~atoll.service.jobs.retries.RetryPolicy` or a mapping of its keys
        ``max``, ``on``, ``backoff``, ``backoff_max``, ``jitter``) retries its asynchronous jobs that
        fail with one of the exceptions named in ``on``. ``on_error`` (``"fail"``, ``"skip"`` or
        ``"collect"``) and ``max_errors`` say what its runs do with elements whose stage raises, unless a
        call says otherwise (see :mod:`atoll.dead_letters`).
        """
        if self._apps:
            raise RegistrationError(f"register {endpoint!r} before create_app(): the app already "
                                    f"serves a fixed set of pipelines")
        if not isinstance(pipeline, Pipeline):
            raise RegistrationError(f"{endpoint!r}: expected an atoll Pipeline, got "
                                    f"{type(pipeline).__name__}")
        if not isinstance(endpoint, str):
            raise RegistrationError(f"endpoint must be a string like '/wordcount', got {endpoint!r}")
        name = endpoint.strip("/")
        if not _NAME.match(name):
            raise RegistrationError(f"endpoint {endpoint!r}: a pipeline name is one path segment of "
                                    f"letters, digits, '_', '-', '.' or '~' (like '/wordcount')")
        if name in self.pipelines:
            raise RegistrationError(f"a pipeline is already registered as {name!r}")
        try:
            policy = RetryPolicy.parse(retries)
        except InvalidRetryPolicy as exc:
            raise RegistrationError(f"{endpoint!r}: {exc}") from None
        try:
            errors = None if on_error is None and max_errors is None else policy_of(on_error, max_errors)
        except ValueError as exc:
            raise RegistrationError(f"{endpoint!r}: {exc}") from None
        factory = self._executor_factory(name, executor, n_jobs, distributed)
        self.pipelines[name] = Registered(name, f"/pipelines/{name}", pipeline, factory, policy, errors)
        log.debug("registered pipeline %r (%s)", name, factory.description)

    def _executor_factory(self, name: str, executor: Executor | str | None, n_jobs: int | None,
                          distributed: bool) -> _ExecutorFactory:
        chosen = [k for k, v in (("executor", executor), ("n_jobs", n_jobs),
                                 ("distributed", distributed or None)) if v is not None]
        if len(chosen) > 1:
            raise RegistrationError(f"{name!r}: pass only one of executor=, n_jobs=, distributed=True; "
                                    f"got {', '.join(chosen)}")
        if isinstance(executor, Executor):
            return _ExecutorFactory(lambda: executor, repr(executor))
        if n_jobs is not None:
            try:
                effective_n_jobs(n_jobs)
            except ValueError as exc:
                raise RegistrationError(f"{name!r}: {exc}") from None
            return _ExecutorFactory(_local(n_jobs), f"local(n_jobs={n_jobs})")
        kind = "spark" if distributed else executor if executor is not None else self.config.default_executor
        if kind == "serial":
            return _ExecutorFactory(SerialExecutor, "serial")
        if kind == "local":
            return _ExecutorFactory(_local(self.config.n_jobs), f"local(n_jobs={self.config.n_jobs})")
        if kind == "spark":
            return _ExecutorFactory(_spark(self.config), "spark")
        raise RegistrationError(f"{name!r}: executor must be an atoll Executor or one of serial, local, "
                                f"spark; got {executor!r}")

    def get(self, name: str) -> Registered:
        """Return the registered pipeline ``name`` or raise :class:`~atoll.service.app.UnknownPipeline`."""
        try:
            return self.pipelines[name]
        except KeyError:
            raise UnknownPipeline(name, list(self.pipelines)) from None

    def run_pipeline(self, name: str, data: Any, kwargs: dict | None = None, *, checked: bool = False,
                     errors: ErrorPolicy | None = None) -> Any:
        """Run the registered pipeline ``name`` on ``data`` with runtime ``kwargs``; return its results.

        The executor checks ``kwargs`` unless ``checked`` says the caller did. Raises
        :class:`~atoll.service.app.UnknownPipeline`, or the pipeline's own PipelineError / StageFailure.

        Under an error policy (``errors``, else the one registered with the pipeline) the answer is a
        :class:`~atoll.dead_letters.RunResult`, keeping at most ``dead_letters_max`` dead letters; the
        failing elements are counted in the metrics (``atoll_elements_failed_total``).
        """
        def run(registered: Registered, policy: dict) -> Any:
            return registered.executor().run(registered.pipeline, data, kwargs or {}, checked=checked,
                                             **policy)

        return self._run(name, errors, run)

    def _run(self, name: str, errors: ErrorPolicy | None, run: Callable[[Registered, dict], Any]) -> Any:
        """Return ``run(registered, policy)`` for the registered pipeline ``name``, ``policy`` the keyword
        ``errors`` (that policy, else the pipeline's, with ``dead_letters_max``) or none; the run and
        its failing elements are counted in the metrics."""
        registered = self.get(name)
        policy = errors or registered.on_error
        started = time.perf_counter()
        try:
            if policy is None:
                return run(registered, {})
            policy = ErrorPolicy(policy.on_error, policy.max_errors, self.config.dead_letters_max)
            try:
                outcome = run(registered, {"errors": policy})
            except TooManyErrors as exc:
                _observe_failures(name, exc.by_stage)
                raise
            _observe_failures(name, outcome.by_stage)
            return outcome
        finally:
            _observe_run(name, registered, time.perf_counter() - started)

    def run_request(self, run: RunRequest, owner: str | None = None) -> Any:
        """Run a request parsed by :meth:`RunRequest.parse
        <atoll.service.http.run_request.RunRequest.parse>`; return its results, or with
        ``"results_to": "dataset"`` the ``Dataset`` holding them (owned by ``owner``); under an error
        policy, in a :class:`~atoll.dead_letters.RunResult`."""
        data = self.resolve_data(run.data)
        if run.results_to == "dataset":  # parse checked the kwargs
            return self.run_to_dataset(run.pipeline, data, run.kwargs, owner=owner, checked=True,
                                       errors=run.errors)
        return self.run_pipeline(run.pipeline, data, run.kwargs, checked=True, errors=run.errors)

    # -- datasets ----------------------------------------------------------------------------

    def datasets(self) -> DatasetStore:
        """Return the service's dataset store (``datasets_url``), built on first use in this process."""
        if self._datasets is None:
            with self._job_system_lock:
                if self._datasets is None:
                    from atoll.service.datasets.store import DatasetStore

                    self._datasets = DatasetStore(self.config)
        return self._datasets

    def run_to_dataset(self, name: str, data: Any, kwargs: dict | None = None, *, job_id: str | None = None,
                       owner: str | None = None, checked: bool = False,
                       errors: ErrorPolicy | None = None) -> Any:
        """Run the registered pipeline ``name`` on ``data`` and store its results as a new JSON-lines
        dataset; return its ``Dataset`` (metadata), under an error policy (as :meth:`run_pipeline`) in
        a :class:`~atoll.dead_letters.RunResult`.

        One record per element of a list result, the value itself otherwise. A pipeline ending in
        element-wise stages is written as its results are produced, never held whole (see
        :meth:`Executor.stream <atoll.Executor.stream>`); any other is run whole first. Nothing is
        kept when the run or the store fails, or more elements fail than ``max_errors`` allows."""
        from atoll.encoding import to_json

        def run(registered: Registered, policy: dict) -> Any:
            ended: list = []

            def records() -> Iterator:  # what the stream returns at its end: a RunResult, or None
                ended.append((yield from registered.executor().stream(
                    registered.pipeline, data, kwargs or {}, checked=checked, **policy)))

            stream = records()
            try:
                dataset = self.datasets().writer("jsonl", owner=owner, job_id=job_id).write(
                    stream, lambda record: to_json(record, path="results").encode("utf-8"))
            finally:
                stream.close()  # a run stopped half-way stops its workers now
            return dataset if ended[0] is None else replace(ended[0], results=dataset)

        return self._run(name, errors, run)

    def resolve_data(self, data: Any) -> Any:
        """Return a run's input: ``data`` itself, or what a ``{"dataset"|"files"|"url": ...}``
        reference names, read lazily where the pipeline runs (DatasetNotFound, DataRefRefused)."""
        from atoll.service.datasets.refs import is_ref, parse_ref, resolve

        if not is_ref(data):
            return data
        ref = parse_ref(data, self.config)
        assert ref is not None
        return resolve(ref, self.datasets())

    # -- health ------------------------------------------------------------------------------

    def _service_check(self) -> tuple[str, bool, dict, bool]:
        return "service", True, {"pipelines": len(self.pipelines)}, True

    def health_status(self) -> tuple[str, bool, dict]:
        """Run every health check; return (:func:`~atoll.service.app.health_word` of the report, all
        required ones passed, report): what ``GET /health`` and ``atoll status`` say."""
        healthy, report = self.health()
        return health_word(healthy, report), healthy, report

    def health(self) -> tuple[bool, dict]:
        """Run every health check; return (all required ones passed, report)."""
        report: dict[str, dict] = {}
        healthy = True
        for check in self.health_checks:
            try:
                name, ok, detail, required = check()
            except Exception as exc:  # a broken check reports itself as failing, required
                name = getattr(check, "__name__", repr(check))
                ok, detail, required = False, {"error": f"{type(exc).__name__}: {exc}"}, True
            report[name] = {"ok": bool(ok), "required": bool(required), **(detail or {})}
            healthy = healthy and (ok or not required)
        return healthy, report

    # -- the web app -------------------------------------------------------------------------

    def create_app(self) -> Flask:
        """Return a new Flask app serving the registered pipelines (for gunicorn ``module:app``)."""
        from flask import Flask

        from atoll.service import request_ids
        from atoll.service.encoding import AtollJSONProvider
        from atoll.service.http import (
            auth,
            datasets,
            errors,
            health,
            jobs,
            metrics,
            openapi,
            pipelines,
            probes,
            rate_limits,
            ui,
        )
        from atoll.service.watchdog import CountRequests, Watchdog

        unknown = sorted(set(self.config.pipeline_time_limits) - set(self.pipelines))
        if unknown:  # most likely a misspelt name, whose limits would never apply
            log.warning("pipeline_time_limits names pipelines that are not registered: %s; registered: %s",
                        ", ".join(unknown), ", ".join(sorted(self.pipelines)) or "none")
        app = Flask("atoll")
        app.json_provider_class = AtollJSONProvider
        app.json = AtollJSONProvider(app)
        app.config["MAX_CONTENT_LENGTH"] = self.config.max_request_bytes
        app.config["ATOLL_SERVER"] = {  # read by atoll serve's web server (atoll.service.server)
            "header_timeout": self.config.client_header_timeout,
            "body_timeout": self.config.client_body_timeout,
            "send_timeout": self.config.client_send_timeout}
        app.extensions["atoll"] = self
        app.extensions["atoll.readiness"] = probes.Readiness(self)
        watchdog = app.extensions["atoll.watchdog"] = Watchdog()
        try:
            system = self.job_system()
        except ImportError as exc:  # celery is part of the service extra
            log.warning("asynchronous jobs are unavailable: %s", exc)
            system, app.extensions["atoll.jobs.missing"] = None, str(exc)
        app.extensions["atoll.jobs"] = system
        errors.register_handlers(app)
        # WSGI middleware around Flask, innermost first: each request is counted in and out (a web
        # process the watchdog ends lets them finish), counted and timed in the metrics, and served
        # with its request id set (a refused or failed one too)
        app.wsgi_app = CountRequests(app.wsgi_app, watchdog)  # type: ignore[method-assign]
        # each reads what it needs from app.extensions; the rate limits count a caller auth has found
        for part in (metrics, request_ids, auth, rate_limits):
            part.install(app)
        app.config["ATOLL_SERVER"]["streamed"] = datasets.STREAMED  # bodies the web server streams
        own = [pipelines.blueprint, *([jobs.blueprint] if system is not None else []), datasets.blueprint,
               health.blueprint,
               probes.blueprint, openapi.blueprint, ui.blueprint]
        for blueprint in (*own, *self.blueprints):
            app.register_blueprint(blueprint)
        self._apps += 1
        return app

    def job_system(self) -> JobSystem:
        """Return the service's job system (Celery app, job store, callback delivery), built on first
        use in this process, with its health checks (broker, store, workers) added to ``health_checks``.

        Raises ImportError when Celery (the service extra) is not installed.
        """
        if self._job_system is None:
            with self._job_system_lock:
                if self._job_system is None:
                    from atoll.service.jobs.system import JobSystem

                    system = JobSystem(self)
                    self.health_checks.extend(system.health_checks())
                    self._job_system = system
        return self._job_system

    @property
    def celery(self) -> Any:
        """Return the service's Celery app (``celery = service.celery`` for ``celery -A module:celery``)."""
        return self.job_system().celery

    def run(self, host: str = "127.0.0.1", port: int = 5000, debug: bool = False, **options: Any) -> None:
        """Serve with Flask's development server (use ``atoll serve`` or gunicorn in production)."""
        self.create_app().run(host=host, port=port, debug=debug, **options)
