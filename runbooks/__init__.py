"""The ops side: Ansible-style runbooks run over Fabric SSH, one shell session per host.

inventory.py   environments -> hosts, groups, vars; secrets as ${VAR} references
book.py        YAML runbooks validated with file:line:field errors (source.py loads them)
expressions.py `when` and `{{ }}`: Jinja2 on its sandbox (templating.py; nothing is Python)
actions/       registered actions: shell, command, file, upload, template, service, facts
session.py     one long-lived /bin/sh per host carrying every step, sentinel-delimited
become.py      a step's scripts through sudo, the password on its stdin only
targets.py     LocalTarget and SSHTarget; connection errors classified at the boundary
executor.py    batches per serial, hosts in parallel, retries, rescue, check mode
results.py     values: step, host and run results, recap, JSON
history.py     every run (and ops command) in SQL, redacted
redact.py      masks known secrets and secret patterns (rule: celery_app/infra/redaction.py)
service.py     the API commands call: run_book, run_steps, run_python
render.py      progress lines, recap and history for people
"""
