"""flowfabric_worker — durable tasks on Redis/Valkey speaking the FlowFabric 0.15
function contract."""

__version__ = "0.1.0"
