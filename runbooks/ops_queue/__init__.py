"""Runbooks on the `ops` Celery queue: signed requests, the worker's runner."""
