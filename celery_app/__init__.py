"""Maqsafy's Celery app: jobs that post money to SQL exactly once under Redis locks.

`celery -A celery_app worker` finds the app in :mod:`celery_app.celery`. Importing this
package imports nothing heavy, so the pure ledger rules (:mod:`celery_app.money.ledger`) stay usable
without Celery, Redis or SQLAlchemy.
"""

__version__ = "0.1.0"
