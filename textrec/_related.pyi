# Type stub of textrec/_related.c (see its header comment).
from typing import Any

def accumulate(
    q_terms: Any,
    q_w: Any,
    terms: Any,
    ptr: Any,
    widths: Any,
    offsets: Any,
    packed: Any,
    impacts: Any,
    lut: Any,
    acc: Any,
    touched: Any,
    nt: int,
) -> int: ...
def top_k(
    acc: Any, touched: Any, nt: int, exclude: int, dead: Any, best_rows: Any, best_scores: Any
) -> None: ...
def lookup(blob: Any, starts: Any, n: int, block: int, terms: list[str], out: Any) -> None: ...
