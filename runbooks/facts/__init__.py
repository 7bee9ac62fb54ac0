"""Facts: typed reads of a host's state, apart from the actions that change it (pyinfra-style)."""
