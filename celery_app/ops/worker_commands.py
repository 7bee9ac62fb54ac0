"""Remote-control commands the workers answer (`celery inspect release`)."""

from __future__ import annotations

import os
from typing import Any

from celery.worker.control import inspect_command

from celery_app import __version__


@inspect_command()
def release(state: Any) -> dict[str, str]:
    """The release this worker runs: $MAQSAFY_RELEASE as deployed, else the package version."""
    return {"release": os.environ.get("MAQSAFY_RELEASE") or __version__}
