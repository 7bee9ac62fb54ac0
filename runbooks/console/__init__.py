"""The ops console: a web entry point over the same services the commands call.

    serve.py      where it may listen, what must hold before it starts, uvicorn on one socket
    wiring.py     what every page works on (the app, Celery, the session store, login guard),
                  the background work (the workers' ping, the queue sampler)
    app.py        the routes (each page signed in unless listed public) and the middleware
    routing.py    the signed-in wrapper: session -> operator, CSRF on every POST, errors
    auth.py       sign-in (login protection, operator password), sessions, sign-out
    csrf.py       per-session tokens, the sign-in form's double-submit cookie, the compare
    acting.py     an action run as the signed-in operator through the access gate and history
    errors.py     the project's errors as HTTP statuses and one line for people
    headers.py    the security headers on every response
    health.py     readiness (/healthz?ready=1): the sessions Redis and the database answer
    chart.py      line charts as SVG geometry (the Queues page's), no script, no inline style
    templating.py the Jinja2 environment (autoescape) and rendering
    pages/        overview, failed tasks, runs, approvals, deploys, queues, workers, sign-in
    templates/ static/  the HTML and the CSS (no JavaScript)

Pages call the functions the commands call (`celery_app.ops.status.collect`,
`celery_app.ops.failed_tasks`, `runbooks.engine.history`, `runbooks.access.approvals`,
`runbooks.deploy.log`, `celery_app.ops.queues`, `celery_app.ops.queue_samples`,
`celery_app.ops.workers`), so the two never disagree.
"""
