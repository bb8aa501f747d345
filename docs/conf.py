"""Sphinx configuration: Markdown pages through myst-parser, the API from docstrings.

Built in the test suite (tests/test_docs.py) with ``sphinx-build -W``: a warning is an
error, so a broken cross-reference or a page left out of the toctree fails the tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

project = "private-channels"
author = "the private-channels developers"
copyright = "the private-channels developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}

html_theme = "alabaster"
html_title = "private-channels"
