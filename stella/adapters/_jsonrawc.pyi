from collections.abc import Mapping, Sequence
from typing import Any

def row_items(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, bytes, bytes]]: ...
