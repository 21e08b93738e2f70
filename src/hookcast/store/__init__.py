"""Persistence: one module per SQL dialect; the deliveries table is the queue."""
