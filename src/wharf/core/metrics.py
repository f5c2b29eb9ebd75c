"""Prometheus metrics: one registry of every metric Wharf exports at /metrics.

Defined in one place so each layer (requests, cache, rate limits, database) records into the
same names; `wharf.core.http.exposition` serves them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "wharf_http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "wharf_http_request_duration_seconds",
    "Time from request start to the last response byte, by route template and method.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
CACHE = Counter(
    "wharf_cache_lookups_total",
    "Response cache lookups, by result (hit, miss, bypass).",
    ["result"],
)
RATE_LIMITED = Counter(
    "wharf_rate_limited_total",
    "Requests refused with 429, by policy.",
    ["policy"],
)
JOBS = Counter(
    "wharf_jobs_total",
    "Background job runs, by kind and the state they left the job in (done, pending for a "
    "retry, failed).",
    ["kind", "state"],
)
JOB_DURATION = Histogram(
    "wharf_job_duration_seconds",
    "Time one background job run took (a webhook delivery: the receiver's answer), by kind.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
BACKEND_ERRORS = Counter(
    "wharf_backend_errors_total",
    "Failures of an optional backend that Wharf served around (e.g. Redis down), by backend.",
    ["backend"],
)

# Database pool use. With one process these are read from the pool at scrape time (see
# core.exposition); with several workers (prometheus_client's multiprocess mode) each worker
# keeps these gauges up to date from pool events and /metrics sums them over live workers. They
# are not registered: in single-process mode the scrape-time reading is the one exported.
POOL_CHECKED_OUT_HELP = "Database connections in use (checked out of the pool), over all workers."
POOL_SIZE_HELP = "Configured database pool size (connections kept open), summed over all workers."
DB_POOL_CHECKED_OUT = Gauge(
    "wharf_db_pool_checked_out",
    POOL_CHECKED_OUT_HELP,
    multiprocess_mode="livesum",
    registry=None,
)
DB_POOL_SIZE = Gauge(
    "wharf_db_pool_size", POOL_SIZE_HELP, multiprocess_mode="livesum", registry=None
)
