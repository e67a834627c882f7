import pytest


@pytest.fixture(scope="session")
def inputs_1deg():
    """Synthetic China at 1° for 2000–2004, computed once (numpy-backed)."""
    from carbonsink.synthetic import make_inputs
    return make_inputs("1", (2000, 2004)).load()
