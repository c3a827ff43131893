"""The tracker's Prometheus metrics (``GET /metrics``), through ``prometheus-client``.

Why the library and not hand-written text: with ``--workers N`` every process
counts its own requests, and prometheus-client's multiprocess mode (values in
small mmap'd files, one per process, in ``PROMETHEUS_MULTIPROC_DIR``, summed
when scraped) gives the whole tracker's numbers from any worker without a
round trip to the store per request. ``multiprocess_dir`` sets that up; it
must run before ``prometheus_client`` is first imported (``swarm tracker
--workers N`` calls it in the parent, before forking). A counter costs about
0.7 µs and a histogram sample 0.9 µs, against about 55 µs for an announce.

Swarm figures (torrents, seeders, leechers, completions) are read from the
store when scraped, not counted: the store is what every worker shares.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

PROTOCOLS = ("http", "udp")
#: Every ``result`` label: ok, or why the answer was a failure reason.
RESULTS = ("ok", "refused", "full", "unavailable", "error")
#: Answer latency buckets (seconds): a memory store answers in tens of microseconds.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
ENV = "PROMETHEUS_MULTIPROC_DIR"
#: UDP fast-path answers tallied before they are added to prometheus-client's values.
TALLY_FLUSH = 1024


def multiprocess_dir() -> str:
    """Create a private directory for the workers' values and point prometheus-client
    at it (before its first import); the caller removes it with ``remove_dir``."""
    path = tempfile.mkdtemp(prefix="swarm-tracker-metrics-")
    os.environ[ENV] = path
    return path


def remove_dir(path: str) -> None:
    os.environ.pop(ENV, None)
    shutil.rmtree(path, ignore_errors=True)


class TrackerMetrics:
    """This process's counters; ``exposition`` renders the whole tracker's."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get(ENV))
        self.registry = CollectorRegistry()  # one per tracker: tests run several in a process
        reg = self.registry
        announces = Counter(
            "swarm_tracker_announces", "Announces answered, by protocol and result",
            ["protocol", "result"], registry=reg,
        )  # fmt: skip
        scrapes = Counter(
            "swarm_tracker_scrapes", "Scrapes answered, by protocol and result",
            ["protocol", "result"], registry=reg,
        )  # fmt: skip
        answer = Histogram(
            "swarm_tracker_answer_seconds", "Time from request to answer, by protocol",
            ["protocol"], buckets=LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip
        #: children bound once: a labels() lookup per request would cost as much as the inc
        self.announces = {(p, r): announces.labels(p, r) for p in PROTOCOLS for r in RESULTS}
        self.scrapes = {(p, r): scrapes.labels(p, r) for p in PROTOCOLS for r in RESULTS}
        self.answer = {p: answer.labels(p) for p in PROTOCOLS}
        self.store_seconds = Histogram(
            "swarm_tracker_store_seconds", "Time the store took for one announce",
            buckets=LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip
        self.store_failures = Counter(
            "swarm_tracker_store_failures", "Store calls that failed, by kind",
            ["kind"], registry=reg,
        )  # fmt: skip
        self.connections = Gauge(
            "swarm_tracker_connections", "Open HTTP connections",
            registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        self.udp_connects = Counter(
            "swarm_tracker_udp_connects", "UDP connect requests answered with an id", registry=reg
        )
        self.udp_bad_ids = Counter(
            "swarm_tracker_udp_bad_connection_ids",
            "UDP requests refused for a forged, replayed or expired connection id",
            registry=reg,
        )
        self.udp_dropped = Counter(
            "swarm_tracker_udp_dropped", "UDP datagrams too short to answer", registry=reg
        )

        self.udp_tally = UdpTally(self)

    def exposition(self, totals: dict[str, int] | None) -> bytes:
        """The text format: counters (every worker's with ``--workers``), then the
        store's figures (``None``: the store is unavailable, so they are left out)."""
        from prometheus_client import CollectorRegistry, generate_latest

        self.udp_tally.flush()
        registry = self.registry
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        figures = CollectorRegistry()
        figures.register(
            _StoreFigures({"store_up": 0} if totals is None else {**totals, "store_up": 1})
        )
        return generate_latest(registry) + generate_latest(figures)


class UdpTally:
    """UDP fast-path answers (``Tracker.udp_announce_datagram``), counted in plain
    lists and added to prometheus-client's values in bulk every ``TALLY_FLUSH``
    answers and at each scrape: its counter and two histogram samples, each behind
    a lock, cost 1.5-2 µs, as much as parsing the datagram. Only the memory store
    takes the fast path, so only one process; the scrape flushes it first."""

    __slots__ = ("metrics", "bounds", "answers", "answer_buckets", "answer_sum",
                 "store_buckets", "store_sum")  # fmt: skip

    def __init__(self, metrics: TrackerMetrics) -> None:
        self.metrics = metrics
        self.bounds = (*LATENCY_BUCKETS, float("inf"))
        self.answers = 0
        self.answer_buckets = [0] * len(self.bounds)
        self.store_buckets = [0] * len(self.bounds)
        self.answer_sum = self.store_sum = 0.0

    def add(self, answer_seconds: float, store_seconds: float) -> None:
        """One announce answered ``ok``, with its answer and store latency."""
        bounds = self.bounds
        self.answer_buckets[bisect_left(bounds, answer_seconds)] += 1
        self.answer_sum += answer_seconds
        self.store_buckets[bisect_left(bounds, store_seconds)] += 1
        self.store_sum += store_seconds
        self.answers += 1
        if self.answers >= TALLY_FLUSH:
            self.flush()

    def flush(self) -> None:
        if not self.answers:
            return
        m = self.metrics
        m.announces["udp", "ok"].inc(self.answers)
        for histogram, buckets, total in (
            (m.answer["udp"], self.answer_buckets, self.answer_sum),
            (m.store_seconds, self.store_buckets, self.store_sum),
        ):
            # prometheus-client has no bulk observe: its bucket and sum values take
            # the tallies (tests/integration/test_udp_fast_path.py reads them back)
            histogram._sum.inc(total)
            for value, n in zip(histogram._buckets, buckets, strict=True):
                if n:
                    value.inc(n)
        self.answers = 0
        self.answer_buckets = [0] * len(self.bounds)
        self.store_buckets = [0] * len(self.bounds)
        self.answer_sum = self.store_sum = 0.0


#: Store figure -> (metric name, type, help).
_FIGURES = {
    "swarms": ("swarm_tracker_torrents", "gauge", "Swarms the tracker knows"),
    "seeders": ("swarm_tracker_seeders", "gauge", "Peers announcing left=0"),
    "leechers": ("swarm_tracker_leechers", "gauge", "Peers still downloading"),
    "peers": ("swarm_tracker_peers", "gauge", "Seeders and leechers"),
    "completed": ("swarm_tracker_completed", "counter", "Completed downloads announced"),
    "store_up": ("swarm_tracker_store_up", "gauge", "1 when the store answered this scrape"),
}


class _StoreFigures:
    """A collector of figures read from the store just before the scrape."""

    def __init__(self, totals: dict[str, int]) -> None:
        self.totals = totals

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for key, (name, kind, text) in _FIGURES.items():
            if key not in self.totals:
                continue
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, text, value=self.totals[key])
