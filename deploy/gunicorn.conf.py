"""gunicorn settings for atoll's web process (``gunicorn --config deploy/gunicorn.conf.py``).

Every setting can be changed through the environment, so one image serves every deployment:
``ATOLL_APP`` (the WSGI app, ``MODULE:APP``), ``ATOLL_BIND``, ``WEB_WORKERS``, ``WEB_THREADS``,
``WEB_TIMEOUT``, ``ATOLL_LOG_LEVEL``, ``FORWARDED_ALLOW_IPS``.
"""

import os
import tempfile

from atoll.cli import ACCESS_LOG_FORMAT, _child_exit

#: the Flask app: a module-level ``app = service.create_app()``
wsgi_app = os.environ.get("ATOLL_APP", "examples.comments:app")
bind = os.environ.get("ATOLL_BIND", "0.0.0.0:8000")

# atoll's threaded worker: whole requests are read (with deadlines) before a thread serves them, so
# slow clients hold no thread, and a synchronous call stuck past its limit gives up its thread alone.
worker_class = "atoll.service.server.BufferingWorker"
workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
# A synchronous pipeline may run for a while; longer jobs belong on the asynchronous path.
timeout = int(os.environ.get("WEB_TIMEOUT", "120"))
graceful_timeout = 30
keepalive = 5

# Recycle workers now and then so that a leak in a user function cannot grow without bound.
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", "10000"))
max_requests_jitter = max_requests // 10

# Load the app in each worker (not the master): every worker gets its own broker connections.
preload_app = False

accesslog = "-"
access_log_format = ACCESS_LOG_FORMAT  # gunicorn's line and the request's X-Request-ID
errorlog = "-"
loglevel = os.environ.get("ATOLL_LOG_LEVEL", "info").lower()

# Trust X-Forwarded-* only from the reverse proxy in front (its address, or "*" inside a private
# network that only the proxy can reach).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# Prometheus multiprocess mode: each web worker writes its counts to this folder and GET /metrics
# adds them up (a fresh folder per start; an operator's own PROMETHEUS_MULTIPROC_DIR is kept). It is
# set here, in the master, before any worker imports prometheus_client.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="atoll-metrics-"))
child_exit = _child_exit  # a dead worker's live gauges leave the sum
