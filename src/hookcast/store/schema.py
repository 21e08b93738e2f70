"""The declared schema (SQLAlchemy Core). Alembic migrations must produce exactly this;
a test compares ``upgrade head`` with it on every store.

Times are integer microseconds since the Unix epoch. On PostgreSQL the three tables that
grow with traffic (events, deliveries, attempts) are partitioned by range of id: ids are
ULIDs, so a range of ids is a range of time, and ``store/partitions.py`` keeps one
partition a day (created ahead, dropped whole by retention). ``deliveries`` is first split
by status into the queue (live deliveries) and the history (the rest, partitioned by
day), with (id, status) as its primary key there. JSON documents are stored as text so
both dialects read them the same way. Deliveries carry no foreign keys: the table is a
hot queue, and a delivery whose endpoint was deleted is discarded by the worker.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

ID = String(26)

#: the live, ordered deliveries (the partial index of each key's head)
ORDERED_LIVE = "ordering_key IS NOT NULL AND status IN ('Scheduled', 'Retry', 'Processing')"

projects = Table(
    "projects",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("type", String(20), nullable=False, server_default="outgoing"),
    Column("config", Text, nullable=False),
    # when the next broadcast delivery of this project may be released (the rate limit)
    Column("broadcast_release_at_us", BigInteger, nullable=False, server_default="0"),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", ID, primary_key=True),
    Column("mask", String(32), nullable=False, unique=True),
    Column("key_hash", String(128), nullable=False),
    Column("name", String(200), nullable=False, server_default=""),
    Column("role", String(20), nullable=False),
    Column("project_id", ID, nullable=True, index=True),
    Column("can_broadcast", Boolean, nullable=False, server_default=text("false")),
    Column("expires_at_us", BigInteger, nullable=True),
    Column("revoked_at_us", BigInteger, nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
)

endpoints = Table(
    "endpoints",
    metadata,
    Column("id", ID, primary_key=True),
    Column("project_id", ID, nullable=False),
    Column("owner_id", String(200), nullable=False, server_default=""),
    Column("name", String(200), nullable=False),
    Column("url", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("status", String(20), nullable=False),
    Column("secrets", Text, nullable=False),
    Column("advanced_signatures", Boolean, nullable=False),
    Column("http_timeout", Integer, nullable=False),
    Column("rate_limit", Integer, nullable=False, server_default="0"),
    Column("rate_limit_duration", Integer, nullable=False, server_default="0"),
    Column("content_type", String(100), nullable=False),
    Column("authentication", Text, nullable=True),
    Column("support_email", String(320), nullable=False, server_default=""),
    Column("slack_webhook_url", Text, nullable=False, server_default=""),
    Column("teams_webhook_url", Text, nullable=False, server_default=""),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    # delivery health: concurrency cap (0 = the worker default), circuit breaker,
    # why it is disabled, and when a disabled endpoint is probed next
    Column("max_in_flight", Integer, nullable=False, server_default="0"),
    Column("breaker", Text, nullable=True),
    Column("disabled_reason", String(40), nullable=False, server_default=""),
    Column("probe_at_us", BigInteger, nullable=True),
    Column("probe_attempts", Integer, nullable=False, server_default="0"),
    # ordered delivery (docs/ordering.md): "none" or "per_key", and what a delivery that
    # failed for good does to its key: "block" (until an operator acts) or "skip"
    Column("ordering", String(20), nullable=False, server_default="none"),
    Column("ordering_on_failure", String(20), nullable=False, server_default="block"),
    Index("ix_endpoints_project_owner", "project_id", "owner_id", "id"),
    Index(
        "ix_endpoints_probe",
        "probe_at_us",
        sqlite_where=text("probe_at_us IS NOT NULL"),
        postgresql_where=text("probe_at_us IS NOT NULL"),
    ),
    Index("ix_endpoints_project_id", "project_id", "id"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("project_id", ID, nullable=False),
    Column("endpoint_id", ID, nullable=False),
    Column("name", String(200), nullable=False),
    Column("type", String(20), nullable=False, server_default="api"),
    Column("filter_config", Text, nullable=False),
    Column("alert_config", Text, nullable=True),
    Column("retry_config", Text, nullable=True),
    Column("rate_limit_config", Text, nullable=True),
    Column("delivery_mode", String(20), nullable=False),
    Column("function", Text, nullable=False, server_default=""),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    Column("status", String(20), nullable=False, server_default="active"),
    # incoming projects: the source this subscription routes ("" for outgoing projects)
    Column("source_id", String(26), nullable=False, server_default=""),
    Index("ix_subscriptions_endpoint", "endpoint_id", "id"),
    Index("ix_subscriptions_source", "source_id", "endpoint_id"),
    Index("ix_subscriptions_project_id", "project_id", "id"),
    Index("ix_subscriptions_project_endpoint", "project_id", "endpoint_id", "id"),
)

events = Table(
    "events",
    metadata,
    Column("id", ID, primary_key=True),
    Column("project_id", ID, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("headers", Text, nullable=False),
    Column("idempotency_key", String(200), nullable=False, server_default=""),
    Column("is_duplicate_event", Boolean, nullable=False, server_default=text("false")),
    Column("endpoints", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("failure_reason", Text, nullable=False, server_default=""),
    Column("api_key_id", ID, nullable=True),
    Column("owner_id", String(200), nullable=False, server_default=""),
    # broadcast fan-out: the keyset cursor of the next chunk and its lease
    Column("fanout_cursor", ID, nullable=True),
    Column("fanout_lease_token", String(40), nullable=True),
    Column("fanout_due_at_us", BigInteger, nullable=True),
    Column("fanout_matched", Integer, nullable=False, server_default="0"),
    Column("fanout_skipped", Integer, nullable=False, server_default="0"),
    Column("fanout_done_at_us", BigInteger, nullable=True),
    # the publish's ordering key (a broadcast's deliveries take it chunk by chunk)
    Column("ordering_key", String(200), nullable=True),
    Column("acknowledged_at_us", BigInteger, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    # incoming events: the source, the request's path and query string
    Column("source_id", String(26), nullable=False, server_default=""),
    Column("url_path", Text, nullable=False, server_default=""),
    Column("url_query_params", Text, nullable=False, server_default=""),
    Index("ix_events_project_id", "project_id", "id"),
    Index("ix_events_project_idempotency", "project_id", "idempotency_key"),
    Index(
        "ix_events_fanout_due",
        "fanout_due_at_us",
        sqlite_where=text("fanout_due_at_us IS NOT NULL"),
        postgresql_where=text("fanout_due_at_us IS NOT NULL"),
    ),
    postgresql_partition_by="RANGE (id)",
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", ID, primary_key=True),
    Column("project_id", ID, nullable=False),
    Column("event_id", ID, nullable=False),
    Column("endpoint_id", ID, nullable=False),
    Column("subscription_id", ID, nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("delivery_mode", String(20), nullable=False),
    Column("idempotency_key", String(200), nullable=False, server_default=""),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("retry_limit", Integer, nullable=False),
    Column("strategy", String(20), nullable=False),
    Column("interval_seconds", Integer, nullable=False),
    Column("max_retry_seconds", Integer, nullable=False),
    # the queue key: next attempt time while Scheduled/Retry, lease expiry while Processing
    Column("due_at_us", BigInteger, nullable=False),
    Column("lease_token", String(40), nullable=True),
    Column("latency_us", BigInteger, nullable=True),
    Column("description", Text, nullable=False, server_default=""),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    # NULL: unordered; else the key whose deliveries to this endpoint go one at a time, in
    # their events' order ("" is the endpoint's one key when the publish named none)
    Column("ordering_key", String(200), nullable=True),
    Index(
        "ix_deliveries_due",
        "due_at_us",
        sqlite_where=text("status IN ('Scheduled', 'Retry', 'Processing')"),
        postgresql_where=text("status IN ('Scheduled', 'Retry', 'Processing')"),
    ),
    Index("ix_deliveries_project_id", "project_id", "id"),
    # one delivery per endpoint per event, whatever the kind of event: the id is derived
    # from the pair (domain/ids.py delivery_id), so the primary key enforces it
    Index("ix_deliveries_event", "event_id", "endpoint_id"),
    Index("ix_deliveries_endpoint", "endpoint_id", "id"),
    # the head of each ordered key: the claim's "no live delivery of an earlier event"
    Index(
        "ix_deliveries_ordering",
        "endpoint_id",
        "ordering_key",
        "event_id",
        sqlite_where=text(ORDERED_LIVE),
        postgresql_where=text(ORDERED_LIVE),
    ),
    postgresql_partition_by="LIST (status)",
)

# ordered keys held by a delivery that failed for good (on_failure "block"): the claim
# skips them until an operator requeues or skips that delivery
ordering_blocks = Table(
    "ordering_blocks",
    metadata,
    Column("endpoint_id", ID, primary_key=True),
    Column("ordering_key", String(200), primary_key=True),
    Column("project_id", ID, nullable=False),
    Column("delivery_id", ID, nullable=False),
    Column("blocked_at_us", BigInteger, nullable=False),
    Index("ix_ordering_blocks_delivery", "delivery_id"),
    Index("ix_ordering_blocks_project", "project_id", "endpoint_id"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("delivery_id", ID, nullable=False),
    Column("project_id", ID, nullable=False),
    Column("endpoint_id", ID, nullable=False),
    Column("url", Text, nullable=False),
    Column("method", String(10), nullable=False),
    Column("ip_address", String(64), nullable=False, server_default=""),
    Column("request_headers", Text, nullable=False),
    Column("response_headers", Text, nullable=False),
    Column("http_status", Integer, nullable=False),
    Column("response_data", Text, nullable=False, server_default=""),
    Column("error", Text, nullable=False, server_default=""),
    Column("success", Boolean, nullable=False),
    Column("requested_at_us", BigInteger, nullable=False),
    Column("responded_at_us", BigInteger, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Index("ix_attempts_delivery", "delivery_id", "id"),
    postgresql_partition_by="RANGE (id)",
)

batch_jobs = Table(
    "batch_jobs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("project_id", ID, nullable=False),
    Column("kind", String(20), nullable=False),  # retry | replay
    Column("filter", Text, nullable=False),
    Column("status", String(20), nullable=False),  # queued | running | done | failed
    Column("cursor", ID, nullable=True),
    Column("total", Integer, nullable=False, server_default="0"),
    Column("processed", Integer, nullable=False, server_default="0"),
    Column("requeued", Integer, nullable=False, server_default="0"),
    Column("error", Text, nullable=False, server_default=""),
    Column("lease_token", String(40), nullable=True),
    Column("due_at_us", BigInteger, nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    Column("finished_at_us", BigInteger, nullable=True),
    Index("ix_batch_jobs_project", "project_id", "id"),
    Index(
        "ix_batch_jobs_due",
        "due_at_us",
        sqlite_where=text("due_at_us IS NOT NULL"),
        postgresql_where=text("due_at_us IS NOT NULL"),
    ),
)

# the event catalog: a project's event types (name unique in the project), each with an
# optional JSON Schema of the events' data and an example data (JSON text)
event_types = Table(
    "event_types",
    metadata,
    Column("id", ID, primary_key=True),
    Column("project_id", ID, nullable=False),
    Column("name", String(200), nullable=False),
    Column("category", String(200), nullable=False, server_default=""),
    Column("description", Text, nullable=False, server_default=""),
    Column("json_schema", Text, nullable=True),
    Column("example", Text, nullable=True),
    Column("deprecated_at_us", BigInteger, nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    Index("ix_event_types_project_name", "project_id", "name", unique=True),
    Index("ix_event_types_project_id", "project_id", "id"),
)

# portal links: a bearer token for one owner of a project (domain/portal_links.py); only
# a SHA-256 of the current token is kept, found by its mask; revoked links stay (their
# tokens answer "revoked") but are no longer listed
portal_links = Table(
    "portal_links",
    metadata,
    Column("id", ID, primary_key=True),
    Column("project_id", ID, nullable=False),
    Column("name", String(200), nullable=False),
    Column("owner_id", String(200), nullable=False),
    Column("can_manage_endpoint", Boolean, nullable=False, server_default=text("false")),
    Column("auth_type", String(20), nullable=False),
    Column("endpoints", Text, nullable=False, server_default="[]"),
    Column("token_mask", String(32), nullable=False),
    Column("token_hash", String(128), nullable=False),
    Column("token_expires_at_us", BigInteger, nullable=True),
    Column("revoked_at_us", BigInteger, nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    Index("ix_portal_links_token_mask", "token_mask", unique=True),
    Index("ix_portal_links_project_id", "project_id", "id"),
    Index("ix_portal_links_project_owner", "project_id", "owner_id", "id"),
)

# sources (Convoy's): where an incoming project's events come from. An ``http`` source is
# the ingest URL ``/ingest/{mask_id}`` with its verifier (JSON text, secrets included: the
# API returns them as Convoy does); a ``pub_sub`` source is a broker consumer whose config
# (``pub_sub``, JSON text) is read by the broker workers through
# ``store/sources.py`` ``list_pub_sub_sources``
sources = Table(
    "sources",
    metadata,
    Column("id", ID, primary_key=True),
    Column("project_id", ID, nullable=False),
    Column("mask_id", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("type", String(20), nullable=False),
    Column("provider", String(40), nullable=False, server_default=""),
    Column("is_disabled", Boolean, nullable=False, server_default=text("false")),
    Column("verifier", Text, nullable=False),
    Column("custom_response", Text, nullable=True),
    Column("idempotency_keys", Text, nullable=False, server_default="[]"),
    Column("forward_headers", Text, nullable=False, server_default="[]"),
    Column("body_function", Text, nullable=False, server_default=""),
    Column("header_function", Text, nullable=False, server_default=""),
    Column("event_type_location", Text, nullable=False, server_default=""),
    Column("pub_sub", Text, nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    Index("ix_sources_mask_id", "mask_id", unique=True),
    Index("ix_sources_project_id", "project_id", "id"),
    Index("ix_sources_type", "type", "is_disabled"),
)
