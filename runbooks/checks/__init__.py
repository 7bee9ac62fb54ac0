"""Checks across the tool: the secret scan of the repository."""
