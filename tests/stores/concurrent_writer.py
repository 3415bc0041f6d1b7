"""A writer process for the concurrency test: deterministic batches, started together.

Writer 0 uses even as-of times and writer 1 odd ones, so the converged value of every key
is unambiguous.
"""

from __future__ import annotations

import random
import time
import traceback
from typing import Any

N_KEYS = 300
N_BATCHES = 60


def batches(parity: int) -> list[list[tuple[int, int]]]:
    """The (key, as_of_us) pairs writer ``parity`` writes, batch by batch."""
    rng = random.Random(1000 + parity)
    return [
        [(k, rng.randrange(0, 5_000) * 2 + parity) for k in rng.sample(range(N_KEYS), 150)]
        for _ in range(N_BATCHES)
    ]


def write(kind: str, options: dict[str, Any], parity: int, barrier: Any, results: Any) -> None:
    """Open its own store, wait for the other writer, write; report (parity, start, end)."""
    from lendml.stores.base import OnlineRecord, create_online_store

    try:
        store = create_online_store(kind, **options)
        todo = batches(parity)
        barrier.wait(timeout=60)
        start = time.time()
        for batch in todo:
            store.write_batch(
                "conc", [OnlineRecord(k, {"writer": parity, "t": t}, t) for k, t in batch]
            )
            time.sleep(0.001)  # let the other writer in between batches
        end = time.time()
        store.close()
        results.put((parity, start, end, None))
    except BaseException:  # report anything to the parent, which fails the test with it
        results.put((parity, 0.0, 0.0, traceback.format_exc()))
