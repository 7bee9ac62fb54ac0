"""`invoke deploy`: rolling, locked, reversible deploys of the Celery app to the worker hosts.

layout.py    the one model of a deployed host: paths, entry points, node names, defaults
release.py   build a release once on the laptop: git archive REF, its .venv, MANIFEST, one tarball
scripts.py   the shell each host-side step runs
hostside.py  what happens on a host: preflight, ship (SFTP + unpack), migrate, switch, restart
gate.py      the health gate after each batch (ping on the new release, consumers, failures)
lock.py      one deploy per environment: a Redis lock naming its owner, kept by a heartbeat
workers.py   the workers-restart book's actions (restart on the live release, verify)
request.py   what was asked (DeployRequest, --serial/--max-fail) and the report per host
context.py   one deploy's environment, actions, lock and history row; the batch roll
rollout.py   the phases composed from engine runs: deploy, rollback, releases, unlock
"""
