"""The flow that ties the pure core to disk and backends: preflight → submit → poll.

Every step records its intent in the ledger before acting and labels every job with its
run id, so a crash anywhere is repaired by the next ``submit`` or ``poll``: a job that
started but was never recorded is found and adopted, never started twice.
"""
