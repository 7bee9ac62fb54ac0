"""Who may change what: operator accounts, their API tokens and roles, and approvals.

    roles.py      viewer < operator < approver < admin, and the role each record needs
    passwords.py  scrypt password hashes; random tokens kept as sha256 digests
    tables.py     operators, operator_tokens, approvals (migration 0005)
    operators.py  add, list, disable; login (a token) and logout (revoke it)
    token_file.py the command line's token in the user's config directory (mode 0600)
    approvals.py  the two-person rule: request, approve, deny, list; the digest of what runs
    gate.py       the one decision every history record passes (runbooks.engine.history)

With no operator account the tool is one local operator (the OS user), as it always was.
"""
