"""In-memory OpenTelemetry providers for tests: spans, metrics and log records of this process.

OpenTelemetry's global providers can be set once per process, so this installs them once and each test
clears what was collected. Azure SDK calls are traced through azure-core's OpenTelemetry plugin, as the
Azure Monitor distro sets it up in production.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class Memory:
    spans: Any
    metrics: Any
    logs: Any

    def clear(self) -> None:
        self.spans.clear()
        self.logs.clear()

    def metric_points(self) -> dict[tuple[str, tuple[tuple[str, Any], ...]], Any]:
        """Every data point now: (metric name, sorted attributes) -> point."""
        points: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}
        data = self.metrics.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        points[(metric.name, tuple(sorted(point.attributes.items())))] = point
        return points


_memory: Memory | None = None


def install() -> Memory:
    global _memory
    if _memory is not None:
        return _memory
    from azure.core.settings import settings
    from opentelemetry import _logs, metrics, trace
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans, reader, logs = InMemorySpanExporter(), InMemoryMetricReader(), InMemoryLogRecordExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    _logs.set_logger_provider(logger_provider)
    logging.getLogger().addHandler(LoggingHandler(logger_provider=logger_provider))
    settings.tracing_implementation = "opentelemetry"  # what the distro's azure_sdk instrumentation does
    _memory = Memory(spans, reader, logs)
    return _memory


def counter_value(points: Mapping[tuple[str, tuple[tuple[str, Any], ...]], Any], name: str, **labels: str) -> int:
    point = points.get((name, tuple(sorted(labels.items()))))
    return 0 if point is None else int(point.value)
