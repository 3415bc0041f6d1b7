"""A writer process for the concurrency test: deterministic batches, started on a signal.

Run as ``python -m tests.stores.concurrent_writer KIND OPTIONS_JSON PARITY GO_FILE``: it opens
the store, touches ``ready-PARITY`` beside ``GO_FILE``, waits for ``GO_FILE``, writes its
batches and prints when it started and ended. Writer 0 uses even as-of times and writer 1
odd ones, so the converged value of every key is unambiguous.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

N_KEYS = 300
N_BATCHES = 60


def batches(parity: int) -> list[list[tuple[int, int]]]:
    """The (key, as_of_us) pairs writer ``parity`` writes, batch by batch."""
    rng = random.Random(1000 + parity)
    return [
        [(k, rng.randrange(0, 5_000) * 2 + parity) for k in rng.sample(range(N_KEYS), 150)]
        for _ in range(N_BATCHES)
    ]


def main(argv: list[str]) -> None:
    from lendml.stores.base import OnlineRecord, create_online_store

    kind, options, parity, go = argv[0], json.loads(argv[1]), int(argv[2]), Path(argv[3])
    store = create_online_store(kind, **options)
    todo = batches(parity)
    go.with_name(f"ready-{parity}").touch()
    while not go.exists():
        time.sleep(0.002)
    start = time.time()
    for batch in todo:
        store.write_batch(
            "conc", [OnlineRecord(k, {"writer": parity, "t": t}, t) for k, t in batch]
        )
        time.sleep(0.001)  # let the other writer in between batches
    end = time.time()
    store.close()
    print(json.dumps({"start": start, "end": end}))


if __name__ == "__main__":
    main(sys.argv[1:])
