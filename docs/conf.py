"""
Sphinx configuration of the torchjd documentation.

Build the HTML pages, warnings as errors, with:

    python -m sphinx -W --keep-going -b html docs build/docs
"""

import torchjd

project = "torchjd"
author = "torchjd contributors"
copyright = "torchjd contributors"
release = torchjd.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "images/*.py"]

# Markdown: anchors for headings up to ###, so that pages can link to each other's sections.
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

# The signatures already carry the type hints; the descriptions come from the :param: lines.
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": False}
add_module_names = False

html_theme = "alabaster"
html_title = f"torchjd {release}"
html_static_path: list[str] = []
