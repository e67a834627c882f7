import os

import pytest

# `carbonsink demo`/`run` end by writing the run's atlas; the many CLI runs of the tests skip it
# (tests/integration/test_report.py builds atlases on purpose, and checks that `demo` writes one)
os.environ.setdefault("CARBONSINK_NO_ATLAS", "1")


@pytest.fixture(scope="session")
def inputs_1deg():
    """Synthetic China at 1° for 2000–2004, computed once (numpy-backed)."""
    from carbonsink.synthetic import make_inputs
    return make_inputs("1", (2000, 2004)).load()
