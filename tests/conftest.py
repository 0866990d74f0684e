"""Suite-wide settings."""

import torch


def pytest_configure(config):
    # Every test works on tiny tensors: a second intra-op thread gains nothing, and on a busy 2-core machine it
    # makes each op wait for a free core (measured 10-50x slower under load). One thread keeps the suite fast.
    torch.set_num_threads(1)
