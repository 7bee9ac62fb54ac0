"""Checks across the tool: the secret scan, the security audit, the Redis doctor with Docker,
the Docker checks on hosts."""
