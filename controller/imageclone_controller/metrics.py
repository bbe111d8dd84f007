"""Prometheus metrics without a dependency: counters, gauges, histograms and the text format 0.0.4.

Metrics are created on a ``Registry`` and rendered by ``Registry.render()``.
Gauges may be backed by a callback that is read at scrape time (queue depth,
leader status, registry rate limits), so nothing has to push them.
"""
from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

LabelValues = tuple[str, ...]
Samples = Iterable[tuple[Mapping[str, str], float]]


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels_text(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    pairs = [f'{name}="{escape_label(value)}"' for name, value in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: Mapping[str, str]) -> LabelValues:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(str(labels[name]) for name in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {escape_help(self.documentation)}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        raise NotImplementedError


def _called(metric: _Metric, callback: Callable[[], Samples | float]) -> list[tuple[LabelValues, float]]:
    produced = callback()
    if isinstance(produced, (int, float)):
        return [((), float(produced))]
    return sorted((metric._key(labels), float(value)) for labels, value in produced)


class _SampledMetric(_Metric):
    """One float per label set, kept here or read from ``callback`` at render time."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                 callback: Callable[[], Samples | float] | None = None) -> None:
        super().__init__(name, documentation, labelnames)
        self._values: dict[LabelValues, float] = {}
        self._callback = callback

    def _add(self, amount: float, labels: dict[str, str]) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return dict(self._samples()).get(self._key(labels), 0.0)

    def _samples(self) -> list[tuple[LabelValues, float]]:
        if self._callback is None:
            with self._lock:
                return sorted(self._values.items())
        return _called(self, self._callback)

    def render(self) -> list[str]:
        try:
            samples = self._samples()
        except Exception:  # noqa: BLE001 - one broken callback must not break the scrape
            samples = []
        if not samples and not self.labelnames and self._callback is None:
            samples = [((), 0.0)]
        return [*self.header(), *(f"{self.name}{_labels_text(self.labelnames, key)} {format_value(value)}"
                                  for key, value in samples)]


class Counter(_SampledMetric):
    """A monotonically increasing count, optionally by labels; ``callback`` reads one kept elsewhere."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self._add(amount, labels)


class Gauge(_SampledMetric):
    """A value that goes up and down; with ``callback`` it is read at render time."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self._add(amount, labels)

    def remove(self, **labels: str) -> None:
        with self._lock:
            self._values.pop(self._key(labels), None)


class Histogram(_Metric):
    """Observations counted into cumulative ``le`` buckets, with ``_sum`` and ``_count``."""

    kind = "histogram"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                 buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        super().__init__(name, documentation, labelnames)
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError("buckets must be distinct and increasing")
        self.buckets = tuple(float(bound) for bound in buckets)
        self._counts: dict[LabelValues, list[int]] = {}
        self._sums: dict[LabelValues, float] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            counts = self._counts.setdefault(key, [0] * (len(self.buckets) + 1))
            counts[index] += 1
            self._sums[key] = self._sums.get(key, 0.0) + value

    def count(self, **labels: str) -> int:
        with self._lock:
            return sum(self._counts.get(self._key(labels), []))

    def render(self) -> list[str]:
        with self._lock:
            snapshot = sorted((key, list(counts), self._sums[key]) for key, counts in self._counts.items())
        if not snapshot and not self.labelnames:
            snapshot = [((), [0] * (len(self.buckets) + 1), 0.0)]
        lines = self.header()
        for key, counts, total in snapshot:
            cumulative = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                cumulative += count
                le = f'le="{format_value(bound)}"'
                lines.append(f"{self.name}_bucket{_labels_text(self.labelnames, key, le)} {cumulative}")
            lines.append(f"{self.name}_sum{_labels_text(self.labelnames, key)} {format_value(total)}")
            lines.append(f"{self.name}_count{_labels_text(self.labelnames, key)} {cumulative}")
        return lines


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def register(self, metric: _Metric) -> _Metric:
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name} registered twice")
            self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                callback: Callable[[], Samples | float] | None = None) -> Counter:
        return self.register(Counter(name, documentation, labelnames, callback))  # type: ignore[return-value]

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = (),
              callback: Callable[[], Samples | float] | None = None) -> Gauge:
        return self.register(Gauge(name, documentation, labelnames, callback))  # type: ignore[return-value]

    def histogram(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                  buckets: Sequence[float] = DEFAULT_BUCKETS) -> Histogram:
        return self.register(Histogram(name, documentation, labelnames, buckets))  # type: ignore[return-value]

    def render(self) -> str:
        with self._lock:
            metrics = list(self._metrics.values())
        lines: list[str] = []
        for metric in metrics:
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


class _Live:
    """A mapping view re-read at every use (``items()``), for callbacks over replaceable objects."""

    def __init__(self, current: Callable[[], Mapping[str, Any]]) -> None:
        self._current = current

    def items(self):  # noqa: ANN201
        return self._current().items()


# Rewrite latency: seconds from seeing a workload change to having rewritten it (copies included).
LATENCY_BUCKETS: Final = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class ControllerMetrics:
    """The controller's metric set. Scrape-time gauges are bound once their sources exist."""

    def __init__(self, version: str, registry: Registry | None = None) -> None:
        r = self.registry = registry or Registry()
        r.gauge("imageclone_build_info", "The controller's version (always 1).", ("version",)).set(1, version=version)
        self.reconciles = r.counter(
            "imageclone_reconcile_total",
            "Reconciles by kind and result (rewritten, would_rewrite with --dryRun, unchanged, skipped, blocked, "
            "backup_failed, failed, deleted).",
            ("kind", "result"))
        self.failures = r.counter(
            "imageclone_reconcile_failures_total",
            "Failed reconciles by reason (image_missing, backup_failed, rate_limited, api_error, rewrite_blocked).",
            ("reason",))
        self.retries = r.counter("imageclone_reconcile_retries_total",
                                 "Reconciles scheduled again with backoff, by reason.", ("reason",))
        self.images = r.counter(
            "imageclone_image_backups_total",
            "Image backup checks by outcome: copied (a copy was made), present, restored, missing, failed; "
            "with --dryRun would_copy and would_restore instead of copied and restored.",
            ("state",))
        self.rewrite_latency = r.histogram(
            "imageclone_rewrite_latency_seconds",
            "Seconds from a workload change being seen to the workload rewritten (queueing and copies included).",
            buckets=LATENCY_BUCKETS)
        self.reconcile_duration = r.histogram(
            "imageclone_reconcile_duration_seconds", "Time spent in one reconcile, by result.", ("result",))
        self.events = r.counter("imageclone_events_total", "Kubernetes Events sent, by type and reason.",
                                ("type", "reason"))
        self.events_suppressed = r.counter(
            "imageclone_events_suppressed_total",
            "Events not sent: repeated within the rate-limit window, or dropped because the send buffer was full.",
            ("cause",))
        self.watch_restarts = r.counter("imageclone_watch_restarts_total",
                                        "Watches restarted, by informer and cause (expired, error).",
                                        ("informer", "cause"))
        self.leader = r.gauge("imageclone_leader", "1 while this process holds the leader lease, else 0.")
        self.leader_transitions = r.counter("imageclone_leader_transitions_total",
                                            "Times this process became leader.")
        self.leader.set(0)

    def bind_queue(self, queue: Callable[[], Any]) -> None:
        """``queue``: returns the current WorkQueue (a new term of leadership gets a new one)."""
        r = self.registry
        r.gauge("imageclone_workqueue_depth", "Keys ready and waiting for a worker.", callback=lambda: len(queue()))
        r.gauge("imageclone_workqueue_retry_waiting", "Keys waiting out a backoff before their next try.",
                callback=lambda: queue().parked)
        r.gauge("imageclone_workqueue_in_flight", "Keys being reconciled right now.",
                callback=lambda: queue().in_flight)
        r.gauge("imageclone_workqueue_adds", "Keys added to the current term's queue (after de-duplication).",
                callback=lambda: queue().adds)

    def bind_informers(self, current: Callable[[], Any]) -> None:
        """``current``: returns the current ``name -> Informer`` mapping."""
        informers = _Live(current)
        self.registry.gauge("imageclone_informer_synced", "1 once the informer's cache holds a full list.",
                            ("informer",),
                            callback=lambda: [({"informer": k}, float(i.synced)) for k, i in informers.items()])
        self.registry.gauge("imageclone_informer_objects", "Workloads in the cache, by informer (kind[/namespace]).",
                            ("informer",),
                            callback=lambda: [({"informer": k}, float(len(i.store))) for k, i in informers.items()])

    def bind_registries(self, client, registries: Callable[[], Iterable[str]]) -> None:  # noqa: ANN001
        """``client``: the engine's RegistryClient; ``registries``: names to report on."""
        import time

        def states():
            return [(name, client.rate_limit_state(name)) for name in sorted(registries())]

        r = self.registry
        r.gauge("imageclone_registry_rate_limit_remaining",
                "Requests left in the registry's quota, as its RateLimit-Remaining header says.", ("registry",),
                callback=lambda: [({"registry": n}, s.remaining) for n, s in states() if s.remaining is not None])
        r.gauge("imageclone_registry_rate_limit_limit",
                "The registry's quota, as its RateLimit-Limit header says.", ("registry",),
                callback=lambda: [({"registry": n}, s.limit) for n, s in states() if s.limit is not None])
        r.gauge("imageclone_registry_backoff_seconds",
                "Seconds left in a throttling backoff the registry imposed (429/503), 0 when none.", ("registry",),
                callback=lambda: [({"registry": n}, max(0.0, (s.backoff_until or 0.0) - time.time()))
                                  for n, s in states()])
        r.counter("imageclone_registry_requests_total", "HTTP requests sent to registries, by host.", ("host",),
                  callback=lambda: [({"host": h}, c) for h, c in client.request_counts().items()])

    def bind_kube(self, api) -> None:  # noqa: ANN001 - the engine's KubeApi
        self.registry.counter("imageclone_kube_writes_total",
                              "Write requests (PATCH/POST/PUT) sent to the API server for workloads and secrets "
                              "(server-side dry runs not included).",
                              callback=lambda: api.writes)
        self.registry.counter("imageclone_kube_dry_run_writes_total",
                              "Server-side dry-run writes sent with --dryRun: nothing was stored.",
                              callback=lambda: api.dry_run_writes)
