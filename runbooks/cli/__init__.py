"""The command line: one module per Invoke namespace, and what they share."""
