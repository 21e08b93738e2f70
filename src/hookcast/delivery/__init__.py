"""Delivery: the claim loop, the one outbound HTTP client, wake-ups."""
