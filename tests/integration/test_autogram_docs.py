"""Every ```python block of docs/autogram.md runs, in order, in one namespace."""

import re
from pathlib import Path

import pytest

import torchjd.aggregation

PAGE = Path(__file__).resolve().parents[2] / "docs" / "autogram.md"


@pytest.mark.skipif(
    not hasattr(torchjd.aggregation, "UPGradWeighting"), reason="the page uses UPGradWeighting"
)
def test_autogram_page_code_blocks_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
    assert blocks
    namespace: dict[str, object] = {"__name__": "docs_autogram"}
    for index, block in enumerate(blocks):
        exec(compile(block, f"{PAGE.name}[block {index}]", "exec"), namespace)
