"""`invoke deploy`: rolling, locked, reversible deploys of the Celery app to the worker hosts.

release.py   build a release once on the laptop: git archive REF, its .venv, one tarball
hostside.py  what happens on a host: preflight, ship (SFTP + unpack), migrate, switch, restart
gate.py      the health gate after each batch (ping on the new release, consumers, failures)
lock.py      one deploy per environment: a Redis lock naming its owner, kept by a heartbeat
rollout.py   the phases composed from engine runs: deploy, rollback, releases, unlock
"""
