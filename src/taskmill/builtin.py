"""The built-in app that `taskmill up` and `-A`-less commands use: the image tasks (with
their webhooks and hourly cleanup) and the demo tasks. A user's app can take them all with
`app.include(builtin.app)`."""

from __future__ import annotations

from taskmill.app import Taskmill
from taskmill.demo import register_demo_tasks
from taskmill.images.tasks import register_image_tasks
from taskmill.webhooks import register_webhook_task

app = Taskmill()
register_image_tasks(app)
register_webhook_task(app)
register_demo_tasks(app)
