"""The runbook engine: sources, inventory, expressions, books, executor,
results, redaction and history."""
