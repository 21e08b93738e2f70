"""The ports between the domain and the store: records (:mod:`.records`) and the delivery
queue (:mod:`.queue`)."""

from hookcast.domain.ports.queue import (
    AttemptRow,
    Deferral,
    DeliveryQueue,
    Finish,
    Lease,
    Targets,
)
from hookcast.domain.ports.records import (
    BroadcastProgress,
    Catalog,
    ChunkResult,
    DeliveryFilter,
    EndpointHealth,
    EventFilter,
    EventLog,
    FanoutJob,
    IngestResult,
    NewEvent,
    Operations,
    QueueStats,
    Records,
    delivery_filter_from_json,
    event_filter_from_json,
    filter_to_json,
)

__all__ = [
    "AttemptRow",
    "BroadcastProgress",
    "Catalog",
    "ChunkResult",
    "Deferral",
    "DeliveryFilter",
    "DeliveryQueue",
    "EndpointHealth",
    "EventFilter",
    "EventLog",
    "FanoutJob",
    "Finish",
    "IngestResult",
    "Lease",
    "NewEvent",
    "Operations",
    "QueueStats",
    "Records",
    "Targets",
    "delivery_filter_from_json",
    "event_filter_from_json",
    "filter_to_json",
]
