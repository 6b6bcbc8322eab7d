# Type stub of textrec/_mecab.c (see its header comment).
from collections.abc import Callable, Sequence

def find_library(name: str) -> str | None: ...

class Tagger:
    version: str
    def __init__(
        self,
        library: str,
        argv: Sequence[str],
        *,
        cache_size: int = ...,
        tags: Sequence[str] | None = ...,
    ) -> None: ...
    def nouns(self, text: str, normalize: Callable[[str], str]) -> list[str] | None: ...
    def count_nouns(
        self, text: str, counts: dict[str, int], weight: int, normalize: Callable[[str], str]
    ) -> bool: ...
    def tagged(
        self, text: str, normalize: Callable[[str], str]
    ) -> list[tuple[str, str]] | None: ...
