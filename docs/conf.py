"""Sphinx configuration of atoll's documentation (``sphinx-build -W -b html docs docs/_build``)."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE / "_ext"))

import atoll  # noqa: E402

project = "atoll"
author = "the atoll authors"
copyright = "atoll authors"
release = atoll.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    "sphinx.ext.napoleon",
    "atoll_docs",
]
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_title = f"atoll {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

doctest_global_setup = """
import operator
from atoll import Pipeline, SerialExecutor, LocalExecutor
"""

# Only the ``.. doctest::`` blocks of the pages: docstring examples pulled in by autodoc rely on their
# module's namespace and are run by pytest's --doctest-modules instead.
doctest_test_doctest_blocks = ""
