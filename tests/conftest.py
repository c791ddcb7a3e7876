"""Shared test settings.

One torch thread: the tests run tiny models, where OpenMP synchronisation costs more than it
gains, and on a 2-core CI machine the verifier's worker processes need the other core.
"""

import torch

torch.set_num_threads(1)
