import pytest

from mesc.datasets import synthetic


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """12 easy synthetic scenes at 32 x 64."""
    return synthetic.generate(tmp_path_factory.mktemp("t") / "train", 12, seed=1, size=(32, 64), difficulty=(0, 0.4))
