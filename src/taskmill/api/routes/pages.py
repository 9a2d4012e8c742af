"""`/`: the dashboard's place. Until the dashboard lands, a page saying so."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

PLACEHOLDER = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>taskmill</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em}
code{background:#f2f2f2;padding:0 .3em}</style></head>
<body>
<h1>taskmill</h1>
<p>The dashboard is coming. Meanwhile, the API is all here:</p>
<ul>
<li><a href="/docs">API docs</a> (try <code>POST /api/tasks</code>)</li>
<li><a href="/api/stats">/api/stats</a>: queues, workers and throughput</li>
<li><a href="/metrics">/metrics</a>: Prometheus</li>
</ul>
</body>
</html>
"""


def router() -> APIRouter:
    api = APIRouter()

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home() -> HTMLResponse:
        return HTMLResponse(PLACEHOLDER)

    return api
