"""The one Jinja2 environment of the console: templates from the package, autoescaped,
undefined names an error (a typo fails the test of its page, not silently)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from runbooks.console.auth import Viewer


def when(value: str | dt.datetime | None) -> str:
    """A stored time as people read it: 2026-12-01 22:41:07 (UTC)."""
    if value is None:
        return "-"
    text = value.isoformat() if isinstance(value, dt.datetime) else str(value)
    return text[:19].replace("T", " ")


def pretty(value: Any) -> str:
    """JSON text or a value as indented JSON (text that is not JSON as it is)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("runbooks.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["pretty"] = pretty
    return env


TEMPLATES = Jinja2Templates(env=environment())


def render(
    request: Request, template: str, viewer: Viewer | None, status: int = 200, **values: Any
) -> HTMLResponse:
    """The page `template` for `viewer` (None: signed out) with `values`."""
    response: HTMLResponse = TEMPLATES.TemplateResponse(
        request, template, {"viewer": viewer, **values}, status_code=status
    )
    return response
