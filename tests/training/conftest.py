import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Small models gain nothing from intra-op threads on a shared 2-core runner."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
