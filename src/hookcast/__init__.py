"""hookcast: a webhooks gateway that speaks Convoy's REST API."""

__version__ = "0.1.0"
