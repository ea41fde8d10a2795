import pytest
import torch

from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.tiny import create_tiny


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core runner the
    OpenMP spin-waits of a second thread make engine tests 10-100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """A create-tiny Loop model, loaded once per module (a module may define its own `lm`)."""
    return load_checkpoint(create_tiny(tmp_path_factory.mktemp("loop"), "iquestloopcoder"))
