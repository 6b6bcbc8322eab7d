# Type stub of textrec/_batch.c (see its header comment).
from collections.abc import Callable, Iterable, Mapping

def count_df(docs: list[Iterable[str]], df: dict[str, int]) -> int: ...
def simhash_many(
    docs: list[Mapping[str, float]] | list[Mapping[str, int]],
    idf: dict[str, float] | None,
    unseen: float,
    digest: Callable[[str], bytes],
) -> list[int] | None: ...
