"""The Convoy-compatible REST API (aiohttp.web)."""
