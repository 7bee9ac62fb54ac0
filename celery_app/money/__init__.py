"""The money path: ledger rules, fenced locks, submit, posting, settlement."""
