"""Sphinx configuration of atoll's documentation (``sphinx-build -n -W -b html docs docs/_build``)."""

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

# Every cross-reference must resolve (sphinx-build -n -W): a reference to an undocumented atoll name
# fails the build. Python's and Flask's own names are left out: intersphinx would fetch their
# inventories over the network, which a build here cannot reach.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:(class|data|obj)", r"(collections\.abc|typing|os|abc|enum|pathlib|types)\..*"),
    (r"py:(class|data|obj)", r"(flask|werkzeug|celery|kombu|gunicorn)\..*"),
    # Flask's names as the service's type hints spell them (Flask is imported only where it is used)
    (r"py:class", r"Flask|Blueprint|HealthCheck"),
]

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
