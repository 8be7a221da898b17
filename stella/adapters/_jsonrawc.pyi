from collections.abc import Mapping
from typing import Any

def row_items(rows: list[Mapping[str, Any]]) -> list[tuple[str, bytes, bytes]]: ...
