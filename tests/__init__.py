"""taskmill's test suites. Shared support modules get pytest's assertion messages too."""

import sys

if "pytest" in sys.modules:  # not in the processes tests start, which need no pytest
    import pytest

    pytest.register_assert_rewrite("tests.helpers")
