"""The browser tests' per-notebook times are printed by the repository's ``conftest.py``.

``test_lab.py`` records each notebook's seconds with ``record_property``; the root conftest reads
them from the test reports, which also works when pytest-xdist runs the tests in a worker (a
sub-folder's conftest.py is not loaded in xdist's main process).
"""
