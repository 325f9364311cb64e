"""The ``atoll`` command (also ``python -m atoll``).

Each subcommand is added by an ``add_<name>(subparsers)`` function that sets ``func`` on its parser;
``func(args)`` returns the exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from typing import Any

__all__ = ["main", "build_parser", "load_service", "parse_bind", "CliError", "WorkerSupervisor"]

log = logging.getLogger("atoll.cli")


class CliError(Exception):
    """A usage problem the command reports as one line and exit status 2."""


#: top-level modules of the optional extras, and the extra that installs each
EXTRA_OF_MODULE = {"flask": "service", "werkzeug": "service", "celery": "service", "kombu": "service",
                   "gunicorn": "service", "requests": "service", "pyspark": "spark"}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """Return the one-line advice for a module of an extra that is not installed, else None."""
    module = (exc.name or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return f"needs {module!r}, which is not installed: pip install 'atoll[{extra}]'"


def load_service(target: str) -> Any:
    """Return the :class:`atoll.Atoll` named by ``MODULE:SERVICE`` (``MODULE`` alone means ``:service``)."""
    from atoll.service import Atoll

    module_name, _, attr = target.partition(":")
    attr = attr or "service"
    if not module_name:
        raise CliError(f"expected MODULE:SERVICE (like examples.comments:service), got {target!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise CliError(f"cannot import module {module_name!r}: no such module (run from the "
                           f"folder that contains it, or install it)") from None
        raise CliError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # the user's module raised while importing
        raise CliError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    try:
        service = getattr(module, attr)
    except AttributeError:
        found = [n for n, v in vars(module).items() if isinstance(v, Atoll)]
        hint = f"; it has: {', '.join(found)}" if found else "; it defines no Atoll service"
        raise CliError(f"module {module_name!r} has no attribute {attr!r}{hint}") from None
    if not isinstance(service, Atoll):
        raise CliError(f"{module_name}:{attr} is a {type(service).__name__}, not an atoll.Atoll service")
    return service


def parse_bind(bind: str) -> tuple[str, int]:
    """Return (host, port) of ``HOST:PORT`` (``:PORT`` or ``PORT`` mean 127.0.0.1)."""
    host, sep, port = bind.rpartition(":")
    if not sep:
        host, port = "", bind
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise CliError(f"--bind must be HOST:PORT, got {bind!r}") from None
    if not 0 <= number <= 65535:
        raise CliError(f"--bind port must be 0-65535, got {number}")
    return host, number


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


# -- serve -------------------------------------------------------------------------------------


def add_serve(subparsers: Any) -> None:
    """Add ``atoll serve``."""
    parser = subparsers.add_parser(
        "serve", help="serve a service's pipelines over HTTP (gunicorn)",
        description="Serve the registered pipelines of MODULE:SERVICE over HTTP with gunicorn "
                    "(threaded workers that get whole requests only, read with deadlines), or with Flask's "
                    "reloading development server (--dev).")
    parser.add_argument("target", metavar="MODULE:SERVICE",
                        help="the atoll.Atoll instance to serve, e.g. examples.comments:service")
    parser.add_argument("--bind", "-b", default="127.0.0.1:8000", metavar="HOST:PORT",
                        help="address to listen on (default 127.0.0.1:8000)")
    parser.add_argument("--workers", "-w", type=_positive, default=2,
                        help="gunicorn worker processes (default 2)")
    parser.add_argument("--threads", type=_positive, default=4,
                        help="threads per worker process (default 4)")
    parser.add_argument("--timeout", type=_positive, default=120, metavar="SECONDS",
                        help="gunicorn restarts a web worker process whose main loop has not "
                             "reported for this long (default 120). It does not bound a request: "
                             "a synchronous pipeline call is stopped after sync_time_limit "
                             "(config) and answered 504")
    parser.add_argument("--no-access-log", dest="access_log", action="store_false",
                        help="do not write gunicorn's access log to stdout (written by default, with "
                             "each request's X-Request-ID)")
    parser.add_argument("--dev", action="store_true",
                        help="Flask's development server with the reloader and debugger (not for "
                             "production)")
    parser.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    """Run ``atoll serve`` (with a worker process beside it when the broker is the embedded one)."""
    metrics_dir = prepare_metrics_dir()  # before any process that counts starts
    supervisor = None
    serving_pid = os.getpid()
    try:
        service = load_service(args.target)
        import flask  # noqa: F401 -- a service loads without Flask (a worker does): report it here
        configure_logs(service)
        host, port = parse_bind(args.bind)
        warn_open_bind(service.config, host)
        warn_rates_per_process(service.config, 1 if args.dev else args.workers)
        if not args.dev:
            import gunicorn  # noqa: F401 -- a missing extra is reported before a worker is started
        supervisor = start_embedded_worker(service, args.target)
        if args.dev:
            service.create_app().run(host=host, port=port, debug=True, use_reloader=True)
            return 0
        run_gunicorn(service, f"{host}:{port}" if ":" not in host else f"[{host}]:{port}",
                     workers=args.workers, threads=args.threads, timeout=args.timeout,
                     accesslog="-" if args.access_log else None)
    finally:
        # a gunicorn web process that ends (sys.exit in the forked child) unwinds through here too:
        # only the process that started them stops the worker and removes the metrics folder
        if os.getpid() == serving_pid:
            if supervisor is not None:
                supervisor.stop()
            forget_metrics_dir(metrics_dir)
    return 0


def warn_open_bind(config: Any, host: str) -> bool:
    """Print a warning (and return True) when ``atoll serve`` binds a non-loopback ``host`` while no
    token is configured: anyone who reaches the address may run, read and cancel every job."""
    import ipaddress

    if config.callers or config.auth_tokens or host == "localhost":
        return False
    try:
        if ipaddress.ip_address(host).is_loopback:
            return False
    except ValueError:  # a host name: it may resolve anywhere
        pass
    print(f"atoll serve: WARNING: listening on {host}, not a loopback address, with no callers or "
          f"auth_tokens configured: anyone who reaches it may run, read and cancel every job. "
          f"Configure callers (`atoll token` prints a token and its line).", file=sys.stderr, flush=True)
    return True


def warn_rates_per_process(config: Any, workers: int) -> bool:
    """Print a warning (and return True) when rate limits are configured, counted in memory, and
    ``workers`` web processes each count their own: a caller then gets up to ``workers`` times its rate."""
    limited = config.caller_rate_limit or any(entry.get("rate_limit") for entry in config.callers.values())
    if not limited or workers < 2 or not config.rate_limit_storage_url.startswith("memory://"):
        return False
    print(f"atoll serve: WARNING: rate limits are counted in memory (rate_limit_storage_url = memory://) "
          f"by each of the {workers} web processes: a caller may make up to {workers} times its rate. "
          f"Set rate_limit_storage_url to a redis:// URL to count them in one place.", file=sys.stderr,
          flush=True)
    return True


def configure_logs(service: Any) -> None:
    """Format this process's log lines as the service's ``log_format`` says."""
    from atoll.service import log_format

    log_format.configure(service.config.log_format)


def forget_metrics_dir(folder: str | None) -> None:
    """Remove the folder :func:`prepare_metrics_dir` made (if any) and its environment variable."""
    if folder is None:
        return
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") == folder:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]


def prepare_metrics_dir() -> str | None:
    """Point prometheus_client's multiprocess mode at a fresh folder; return it (None if given).

    gunicorn's worker processes and the embedded worker inherit ``PROMETHEUS_MULTIPROC_DIR``, write
    their counts there, and ``GET /metrics`` in any web process adds them all up. A folder the
    operator set is used as it is (and must be emptied between starts, as prometheus_client says).
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    import tempfile

    folder = tempfile.mkdtemp(prefix="atoll-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    return folder


def start_embedded_worker(service: Any, target: str) -> WorkerSupervisor | None:
    """Start ``atoll worker TARGET`` under a :class:`WorkerSupervisor` when jobs use the embedded
    broker; return the supervisor (None when no worker is to run beside the web process)."""
    from atoll.service.jobs.queue import is_embedded

    if not (is_embedded(service.config) and service.config.embedded_worker):
        return None
    log.info("embedded broker: starting a worker process beside the web process")
    return WorkerSupervisor([sys.executable, "-m", "atoll.cli", "worker", target]).start()


class WorkerSupervisor:
    """Runs a worker command as a child process and starts it again whenever it exits.

    A thread polls the child every ``poll_interval`` seconds. A worker that had run for at least
    ``stable_after`` seconds is restarted at once; one that keeps dying young waits 1, 2, 4 ... up to
    ``backoff_max`` seconds between starts, so a worker that cannot start does not spin. Messages the
    dead worker had taken go back to the queue by themselves (see :mod:`atoll.service.transport`).
    """

    def __init__(self, argv: list[str], poll_interval: float = 0.5, stable_after: float = 10.0,
                 backoff_max: float = 30.0):
        import threading

        self.argv = argv
        self.poll_interval = poll_interval
        self.stable_after = stable_after
        self.backoff_max = backoff_max
        #: how many times the worker was started again
        self.restarts = 0
        self.process: Any = None
        self._started_at = 0.0
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # no start while stop() runs, and the reverse
        self._thread = threading.Thread(target=self._watch, name="atoll-worker-supervisor", daemon=True)

    def start(self) -> WorkerSupervisor:
        """Start the worker and the thread watching it; return self."""
        self._spawn()
        self._thread.start()
        return self

    def _spawn(self) -> None:
        import subprocess
        import time

        with self._lock:
            if self._stopping.is_set():
                return
            self.process = subprocess.Popen(self.argv)
            self._started_at = time.monotonic()

    def _watch(self) -> None:
        import time

        failures = 0
        while not self._stopping.wait(self.poll_interval):
            # gunicorn's arbiter reaps every child of this process, ours too: poll() then sees the
            # child gone with status 0, which is still "gone"
            code = self.process.poll()
            if code is None:
                continue
            lived = time.monotonic() - self._started_at
            failures = 0 if lived >= self.stable_after else failures + 1
            delay = 0.0 if failures == 0 else min(self.backoff_max, 2.0 ** (failures - 1))
            status = f" with status {code}" if code else ""
            log.warning("embedded worker (pid %d) exited%s after %.0f s; starting another in %.1f s",
                        self.process.pid, status, lived, delay)
            if self._stopping.wait(delay):
                return
            self._spawn()
            self.restarts += 1
            log.warning("embedded worker restarted as pid %d (restart %d)", self.process.pid,
                        self.restarts)

    def stop(self, timeout: float = 20) -> None:
        """Stop watching, then stop the worker (SIGTERM, SIGKILL after ``timeout`` seconds)."""
        with self._lock:
            self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(self.poll_interval + 5)
        if self.process is not None:
            stop_process(self.process, timeout)


def stop_process(process: Any, timeout: float = 20) -> None:
    """Stop a child process with SIGTERM (warm shutdown), then SIGKILL after ``timeout`` seconds."""
    import subprocess

    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- worker and status -------------------------------------------------------------------------


def add_worker(subparsers: Any) -> None:
    """Add ``atoll worker``."""
    parser = subparsers.add_parser(
        "worker", help="run a Celery worker for a service's asynchronous jobs",
        description="Run a Celery worker that runs MODULE:SERVICE's pipelines for asynchronous jobs "
                    "and delivers their callbacks. Options after the target go to `celery worker` "
                    "(e.g. --concurrency 4 --pool threads).")
    parser.add_argument("--metrics-bind", metavar="HOST:PORT",
                        help="serve this worker's Prometheus metrics (jobs, callbacks, runs) at "
                             "http://HOST:PORT/metrics, for a worker whose web process is on another "
                             "machine (PORT alone means 127.0.0.1:PORT)")
    parser.add_argument("target", metavar="MODULE:SERVICE",
                        help="the atoll.Atoll instance whose pipelines to run")
    parser.add_argument("celery_args", nargs=argparse.REMAINDER, metavar="CELERY_WORKER_OPTION",
                        help="options passed on to `celery worker`")
    parser.set_defaults(func=worker)


def worker(args: argparse.Namespace) -> int:
    """Run ``atoll worker``."""
    metrics_dir = prepare_metrics_dir()  # the pool's processes count jobs in their own memory otherwise
    try:
        celery_args = list(args.celery_args)
        # `--config` after the target is still atoll's (celery's worker command has no such option)
        for i, arg in enumerate(celery_args):
            if arg == "--config" and i + 1 < len(celery_args):
                use_config_file(celery_args[i + 1])
                del celery_args[i:i + 2]
                break
            if arg.startswith("--config="):
                use_config_file(arg.partition("=")[2])
                del celery_args[i]
                break
        service = load_service(args.target)
        configure_logs(service)
        if args.metrics_bind is not None:
            from prometheus_client import start_http_server

            from atoll.service.metrics import registry

            host, port = parse_bind(args.metrics_bind)
            start_http_server(port, addr=host, registry=registry())
        service.job_system().run_worker(celery_args)
    finally:
        forget_metrics_dir(metrics_dir)
    return 0


def add_status(subparsers: Any) -> None:
    """Add ``atoll status``."""
    parser = subparsers.add_parser(
        "status", help="show broker and worker health, or one job's record",
        description="Print MODULE:SERVICE's health (broker, workers) as JSON, or the record of JOB_ID. "
                    "Exit status 1 when a required part is down or the job is unknown.")
    parser.add_argument("target", metavar="MODULE:SERVICE", help="the atoll.Atoll instance")
    parser.add_argument("job_id", nargs="?", help="a job id returned by a 202 answer")
    parser.set_defaults(func=status)


def status(args: argparse.Namespace) -> int:
    """Run ``atoll status``."""
    import json

    service = load_service(args.target)
    system = service.job_system()  # its checks join the service's: the same report as GET /health
    if args.job_id:
        job = system.get(args.job_id)
        if job is None:
            print(f"atoll status: no job {args.job_id!r}", file=sys.stderr)
            return 1
        print(json.dumps(job.public(expose=True), indent=2))
        return 0
    word, healthy, report = service.health_status()  # the word of GET /health
    print(json.dumps({"status": word, "pipelines": sorted(service.pipelines), "checks": report}, indent=2))
    return 0 if healthy else 1


def add_secret(subparsers: Any) -> None:
    """Add ``atoll secret``."""
    parser = subparsers.add_parser(
        "secret", help="print a new callback_secret (whsec_ + base64 of 32 random bytes)",
        description="Print a fresh Standard Webhooks secret for callback_secret: 'whsec_' followed by "
                    "the base64 of 32 random bytes. Receivers verify with the same string.")
    parser.set_defaults(func=secret)


def secret(args: argparse.Namespace) -> int:
    """Run ``atoll secret``."""
    import base64
    import secrets

    print("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii"))
    return 0


def add_token(subparsers: Any) -> None:
    """Add ``atoll token``."""
    parser = subparsers.add_parser(
        "token", help="print a new caller token and the callers line holding its SHA-256",
        description="Print a fresh random bearer token, then the configuration line that names a caller "
                    "with the token's SHA-256 (the configuration never holds the token itself). Give the "
                    "token to the caller; paste the line under callers: (for a rotation, add the hash "
                    "beside the old one, then remove the old one once the caller uses the new token).")
    parser.add_argument("--name", default="caller", help="the caller's name (default: caller)")
    parser.add_argument("--scopes", default="run,read",
                        help="comma-separated scopes among run, read, admin (default: run,read)")
    parser.set_defaults(func=token)


def token(args: argparse.Namespace) -> int:
    """Run ``atoll token``."""
    import hashlib
    import secrets

    from atoll.config import validate

    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    new = "atoll_" + secrets.token_urlsafe(32)  # the prefix lets secret scanners find it
    digest = hashlib.sha256(new.encode("utf-8")).hexdigest()
    entry = {args.name: {"tokens": [digest], "scopes": scopes}}
    validate("callers", entry, "atoll token")  # a bad name or scope is a ConfigError, as in a file
    print(new)
    print(f"  {args.name}: {{tokens: [{digest}], scopes: [{', '.join(scopes)}]}}")
    return 0


#: the gunicorn worker of ``atoll serve``: reads whole requests before a thread serves them
WORKER_CLASS = "atoll.service.server.BufferingWorker"

#: gunicorn's default access log line, followed by the caller's name (``-`` without one; never its
#: token) and the request id atoll answered
ACCESS_LOG_FORMAT = ('%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(L)ss '
                     'caller=%({atoll.caller}e)s id=%({x-request-id}o)s')


def _child_exit(_server: Any, worker: Any) -> None:
    """gunicorn hook: a dead worker's live gauges leave the multiprocess metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def run_gunicorn(service: Any, bind: str, workers: int = 2, threads: int = 4, timeout: int = 120,
                 **options: Any) -> None:
    """Serve ``service.create_app()`` with gunicorn and atoll's buffering worker until stopped."""
    from gunicorn.app.base import BaseApplication

    settings = {"bind": bind, "workers": workers, "threads": threads, "worker_class": WORKER_CLASS,
                "timeout": timeout, "accesslog": None, "errorlog": "-",
                "access_log_format": ACCESS_LOG_FORMAT, "child_exit": _child_exit,
                "loglevel": service.config.log_level.lower(), **options}

    class _Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return service.create_app()

    _Server().run()


# -- config ------------------------------------------------------------------------------------


def add_config(subparsers: Any) -> None:
    """Add ``atoll config``."""
    parser = subparsers.add_parser(
        "config", help="print the effective configuration, or write a configuration file",
        description="Print the effective configuration — ATOLL_<KEY> environment variables over the "
                    "file (--config or ATOLL_CONF) over the defaults — with secrets shown as *** and, "
                    "for each key, where its value came from. With MODULE:SERVICE, the configuration "
                    "of that service as its module built it. With --write PATH, write the keys given "
                    "by --set to the YAML file PATH instead, each checked against the configuration's "
                    "schema first.")
    parser.add_argument("target", metavar="MODULE:SERVICE", nargs="?",
                        help="an atoll.Atoll instance whose configuration to show (optional)")
    parser.add_argument("--json", action="store_true",
                        help='print {"key": {"value": ..., "origin": ...}} as JSON')
    parser.add_argument("--write", metavar="PATH",
                        help="write a configuration file holding the --set keys (replacing PATH; "
                             "readable by its owner only, as it may hold passwords) and print nothing")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a key of the file --write writes, its value read as an ATOLL_<KEY> "
                             "variable's is (text for a string key, else YAML); repeat for more keys")
    parser.set_defaults(func=show_config)


def show_config(args: argparse.Namespace) -> int:
    """Run ``atoll config``."""
    import json

    from atoll.config import load_config

    if args.write is not None or args.settings:
        return write_config(args)
    config = load_service(args.target).config if args.target else load_config()
    shown = config.redacted()
    if args.json:
        print(json.dumps({k: {"value": v, "origin": config.origins[k]} for k, v in shown.items()},
                         indent=2))
        return 0
    width = max(len(k) + len(json.dumps(v)) for k, v in shown.items()) + 2
    print("# the effective configuration of atoll; secrets are shown as ***")
    for name, value in shown.items():
        line = f"{name}: {json.dumps(value)}"
        print(f"{line:<{width}}  # {config.origins[name]}")
    return 0


def write_config(args: argparse.Namespace) -> int:
    """Run ``atoll config --write PATH --set KEY=VALUE ...``: write the keys once all are valid."""
    import yaml

    from atoll.config import SCHEMA, Config, from_env, validate
    from atoll.errors import ConfigError

    if args.write is None:
        raise CliError("--set needs --write PATH (the file to write)")
    if args.target or args.json:
        raise CliError("--write takes only --set KEY=VALUE options")
    values: dict[str, Any] = {}
    for setting in args.settings:
        name, sep, text = setting.partition("=")
        if not sep:
            raise CliError(f"--set expects KEY=VALUE, got {setting!r}")
        if name not in SCHEMA:
            validate(name, None, "--set")  # raises the error naming the valid keys
        try:
            values[name] = from_env(name, text, f"--set {name}")
        except ConfigError:  # without the text: it may be a secret
            raise ConfigError(f"--set {name}: the value is not valid YAML or JSON") from None
    Config(values, source="--set")  # each key checked as a file's would be
    folder = os.path.dirname(os.path.abspath(args.write))
    os.makedirs(folder, exist_ok=True)
    text = ("# written by `atoll config --write`; conf.example.yaml describes every key\n"
            + yaml.safe_dump(values, sort_keys=False, default_flow_style=False))
    descriptor = os.open(args.write, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # a file written before keeps its mode otherwise
    with os.fdopen(descriptor, "w", encoding="utf-8") as fh:
        fh.write(text)
    return 0


# -- workers in the background ------------------------------------------------------------------


def add_workers(subparsers: Any) -> None:
    """Add ``atoll workers``."""
    parser = subparsers.add_parser(
        "workers", help="start, list and stop background workers recorded in pid files",
        description="Manage `atoll worker` processes that run in the background, each recorded in a "
                    "pid file (as ./run worker and ./run stop do). 'start' starts one for MODULE:SERVICE "
                    "under a supervisor that starts it again whenever it exits; 'supervise' is that "
                    "supervisor in the foreground; 'list' and 'stop' take pid files (of any process).")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    start = actions.add_parser(
        "start", help="start a supervised `atoll worker` in the background",
        description="Start `atoll workers supervise MODULE:SERVICE ...` in a session of its own, its "
                    "output appended to --logfile and its pid written to --pidfile; print the pid.")
    start.add_argument("--pidfile", required=True, metavar="PATH", help="where to write the pid")
    start.add_argument("--logfile", required=True, metavar="PATH",
                       help="where the worker's output goes (appended)")
    supervise = actions.add_parser(
        "supervise", help="run `atoll worker`, starting it again whenever it exits",
        description="Run `atoll worker MODULE:SERVICE ...` as a child process and start it again "
                    "whenever it exits (waiting longer each time it dies young), until SIGTERM or "
                    "SIGINT, which stop the worker (warm shutdown).")
    for command in (start, supervise):
        command.add_argument("target", metavar="MODULE:SERVICE",
                             help="the atoll.Atoll instance whose pipelines to run")
        command.add_argument("celery_args", nargs=argparse.REMAINDER, metavar="WORKER_OPTION",
                             help="options passed on to `atoll worker`")
    start.set_defaults(func=start_worker)
    supervise.set_defaults(func=supervise_worker)
    listing = actions.add_parser(
        "list", help="say whether the process of each pid file runs",
        description="Print, for each PIDFILE, its name, its pid, whether that process runs, and the "
                    "log beside it (the same name ending .log).")
    listing.add_argument("pidfiles", nargs="*", metavar="PIDFILE")
    listing.set_defaults(func=list_workers)
    stop = actions.add_parser(
        "stop", help="stop the process of each pid file, then remove the file",
        description="Stop the process of each PIDFILE — its whole session when it leads one — with "
                    "SIGTERM, then SIGKILL after --timeout seconds, and remove the file. A pid file "
                    "whose process is gone is removed; nothing else is touched.")
    stop.add_argument("pidfiles", nargs="*", metavar="PIDFILE")
    stop.add_argument("--timeout", type=_positive, default=30, metavar="SECONDS",
                      help="how long a process may take to stop before SIGKILL (default 30)")
    stop.set_defaults(func=stop_workers)


def start_worker(args: argparse.Namespace) -> int:
    """Run ``atoll workers start``."""
    import subprocess

    running = _pid_of(args.pidfile)
    if running is not None and _alive(running):
        raise CliError(f"{args.pidfile} names pid {running}, which still runs: stop it first")
    for path in (args.pidfile, args.logfile):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    argv = [sys.executable, "-m", "atoll.cli", "workers", "supervise", args.target, *args.celery_args]
    with open(args.logfile, "ab") as log_file:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    with open(args.pidfile, "w", encoding="ascii") as fh:
        fh.write(f"{process.pid}\n")
    print(f"started a worker for {args.target} (pid {process.pid}, log {args.logfile})")
    return 0


def supervise_worker(args: argparse.Namespace) -> int:
    """Run ``atoll workers supervise``."""
    import signal
    import threading

    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    supervisor = WorkerSupervisor([sys.executable, "-m", "atoll.cli", "worker", args.target,
                                   *args.celery_args]).start()
    while not stopping.wait(1.0):
        pass
    supervisor.stop()
    return 0


def _pid_of(pidfile: str) -> int | None:
    try:
        with open(pidfile, encoding="ascii") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it runs
        return True
    try:  # a zombie has ended; only its parent can reap it (Linux says so in /proc)
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _name_and_log(pidfile: str) -> tuple[str, str]:
    stem = pidfile[:-len(".pid")] if pidfile.endswith(".pid") else pidfile
    return os.path.basename(stem), stem + ".log"


def list_workers(args: argparse.Namespace) -> int:
    """Run ``atoll workers list``."""
    for pidfile in args.pidfiles:
        pid = _pid_of(pidfile)
        name, log_path = _name_and_log(pidfile)
        if pid is not None and _alive(pid):
            print(f"{name} pid {pid} alive (log {log_path})")
        else:
            print(f"{name} pid {pid if pid is not None else '?'} NOT running (see {log_path})")
    return 0


def stop_workers(args: argparse.Namespace) -> int:
    """Run ``atoll workers stop``."""
    import signal
    import time

    for pidfile in args.pidfiles:
        pid = _pid_of(pidfile)
        if pid is not None and _alive(pid):
            name = _name_and_log(pidfile)[0]
            print(f"stopping {name} (pid {pid})", file=sys.stderr)
            # a process started in a session of its own (atoll workers start, ./run flower) leads its
            # process group: the group holds its children too
            leads = _process_group(pid) == pid
            _signal(pid, signal.SIGTERM, leads)
            deadline = time.monotonic() + args.timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.5)
            if _alive(pid):
                print(f"{name} did not stop within {args.timeout} s: killing it", file=sys.stderr)
                _signal(pid, signal.SIGKILL, leads)
        with contextlib.suppress(FileNotFoundError):
            os.remove(pidfile)
    return 0


def _process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _signal(pid: int, signum: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)


# -- the command -------------------------------------------------------------------------------

#: functions adding one subcommand each; other modules of atoll append theirs
SUBCOMMANDS = [add_serve, add_worker, add_status, add_secret, add_token, add_config, add_workers]


def build_parser() -> argparse.ArgumentParser:
    """Return the ``atoll`` argument parser with every subcommand."""
    from atoll import __version__

    parser = argparse.ArgumentParser(prog="atoll", description="Serve and run atoll data pipelines.")
    parser.add_argument("--version", action="version", version=f"atoll {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for add in SUBCOMMANDS:
        add(subparsers)
    for command in subparsers.choices.values():
        command.add_argument("--config", metavar="PATH",
                             help="the YAML configuration file (instead of $ATOLL_CONF); ATOLL_<KEY> "
                                  "environment variables still override its keys")
    return parser


def use_config_file(path: str) -> None:
    """Make ``path`` the configuration file of this process and of the processes it starts."""
    if not os.path.isfile(path):
        raise CliError(f"--config {path}: no such file")
    os.environ["ATOLL_CONF"] = os.path.abspath(path)


def main(argv: list[str] | None = None) -> int:
    """Run the ``atoll`` command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if getattr(args, "config", None):
            use_config_file(args.config)
        return args.func(args) or 0
    except CliError as exc:
        print(f"atoll {args.command}: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        advice = missing_extra(exc)
        if advice is None:
            raise
        print(f"atoll {args.command}: {advice}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from atoll.errors import AtollError

        if isinstance(exc, AtollError):  # a bad config or registration: one line, no traceback
            print(f"atoll {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
