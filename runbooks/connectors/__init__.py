"""Targets (this machine, an SSH host) and the one shell session per host."""
