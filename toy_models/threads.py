"""How many CPU threads torch trains the course's models on.

The course's models are tiny: a step of `induction-2l` multiplies matrices of a few
hundred thousand numbers. On a 2-core laptop that is doing anything else (a browser, a
Jupyter server, a second notebook), torch's default of one thread per core makes each
thread wait for a core: with the machine busy, training `induction-2l` on two threads was
measured about 3x slower than on one (`python bench/train_induction.py`: 928 s against
288 s). An idle machine gains from the second thread (the live run of chapters 00 and 02:
3.9 s against 6.3 s), but a learner's machine is rarely idle, and a wait of minutes
costs more than one of seconds. One thread also makes results independent of the
machine's core count, so a rebuild reproduces the shipped weights.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch

TRAINING_THREADS = 1


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on TRAINING_THREADS threads, then restore the caller's setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(TRAINING_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
