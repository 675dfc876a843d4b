import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny convs gain nothing from threads, and on the shared 2-core CI machine OpenMP
    # spin-waiting makes them several times slower.
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
