"""Pipelines: the continuous-learning loop that orchestrates every layer below.

* :func:`run_pass` — one pass: refresh → triggers → retrain → gate → promote, resumable;
* :func:`gate` — the promotion gate (DeLong non-inferiority/superiority, calibration,
  adverse impact, score stability);
* :func:`replay` — passes over a range of as-of times (a backtest of the loop);
* :func:`loop_history` — the audit trail.
"""

from lendml.pipelines.gate import Check, GateResult, gate
from lendml.pipelines.loop import PassResult, floor_as_of, loop_history, replay, run_pass
from lendml.pipelines.state import LoopState

__all__ = [
    "Check",
    "GateResult",
    "LoopState",
    "PassResult",
    "floor_as_of",
    "gate",
    "loop_history",
    "replay",
    "run_pass",
]
