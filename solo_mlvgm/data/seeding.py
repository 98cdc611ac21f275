"""Seeds for independent random streams, derived from (seed, stream, counter) by numpy's SeedSequence.

Continuous Sampling uses stream = rank and counter = global batch number, so ranks never draw the same
latents, a run is reproducible, and a resumed run draws exactly the batches the uninterrupted run would
(the counter is the trainer's restored batch count; see ``ContinuousSampling.on_after_batch_transfer``).
Evaluation splits use streams at and above ``EVAL_STREAM``, never reached by a rank.
"""

from __future__ import annotations

import numpy as np

EVAL_STREAM = 2**31


def stream_seed(seed: int, stream: int, counter: int) -> int:
    """A well-mixed 63-bit seed, distinct for every (seed, stream, counter)."""
    words = np.random.SeedSequence([int(seed), int(stream), int(counter)]).generate_state(2, dtype=np.uint32)
    return int((int(words[0]) << 31) ^ int(words[1])) & (2**63 - 1)
