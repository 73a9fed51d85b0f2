"""Executions hashed into a fixed number of partitions, each decided by one coordinator at a time.

The hash is the one nats-server's ``{{partition(n,1)}}`` subject transform computes (FNV-1a, 32 bits, of
the execution id token, modulo ``n``), so the commands stream files a command under the same partition
number the coordinators compute for the execution's events (``Subjects.partitioned_command``).
"""

from __future__ import annotations

FNV_OFFSET = 0x811C9DC5
FNV_PRIME = 0x01000193


def partition_of(execution_id: str, count: int) -> int:
    """The partition (0 .. ``count`` - 1) of an execution, as the server's ``partition(count,1)`` gives it."""
    h = FNV_OFFSET
    for byte in execution_id.encode():
        h = ((h ^ byte) * FNV_PRIME) & 0xFFFFFFFF
    return h % count
