"""Logs, metrics and traces (docs/observability.md).

Below every layer that records something (engine, client, context, worker):
it imports only :mod:`flowfabric_worker.errors` and third-party libraries,
and those only when the feature is used — ``prometheus_client`` when
metrics are enabled, OpenTelemetry when installed and configured.
"""
