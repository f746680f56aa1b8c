"""How the trainer talks to whoever runs it: five callbacks, no torch.

The job runner (worker/child.py) builds a TrainHooks bound to the job's DB rows and passes it to
`run_training`; tests pass lists' `append`. Keeping this module torch-free lets the runner and its fake
trainer import it without loading the ML stack.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class TrainHooks:
    """Callbacks the training loop calls; each must return quickly (they run on the training thread).

    on_metrics:    batches of rows {step, epoch, loss, lr, grad_norm, tokens_per_s, eval_loss}; eval_loss is
                   None when that step was not evaluated. Rows come in step order; after a resume, rows
                   restart at the checkpoint's step + 1, so a consumer should replace rows of later steps.
    on_checkpoint: (folder, step) once a resumable checkpoint is complete on disk (written atomically).
                   Only the newest few are kept on disk (see loop.KEEP_CHECKPOINTS).
    on_log:        one human-readable line for the job's log tail.
    on_progress:   (step, total_steps) after every optimizer step.
    should_stop:   polled before every optimizer step; True makes the loop raise TrainingCancelled.
    """

    on_metrics: Callable[[list[dict]], None]
    on_checkpoint: Callable[[str, int], None]
    on_log: Callable[[str], None]
    on_progress: Callable[[int, int], None]
    should_stop: Callable[[], bool]


class TrainingCancelled(Exception):
    """should_stop() said stop: the run ends without a final adapter (the last checkpoint stays)."""
