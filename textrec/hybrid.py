"""The hybrid: one list from several sources' lists, so that content carries new posts.

Each source (content ``related``, ``readers``, the factor models ``als`` and ``bpr``) gives its
top candidates for a reader with scores on its own scale. :func:`fuse` puts them on one scale
and adds them up:

- **normalise**: a source's scores are divided by its best score in this list (negative
  scores count as 0), so every source's best candidate has 1;
- **blend**: an item's score is the weighted sum of its normalised scores, divided by the sum
  of the weights of the sources that *know* the item: a source knows an item when it could
  have ranked it at all (the factor models know the posts they were trained on, ``readers``
  the posts with readers, content every post with terms). A post published a minute ago is
  known to content alone, so it competes on its content score instead of being pulled down
  by the zeros of sources that have never seen it; an old post that the readers' sources
  know but did not pick is pulled down by them.

``rule="rrf"`` (reciprocal rank fusion, ``w / (60 + rank)``, with the same division by the
weights of the sources that know the item) is the measured alternative; the default rule and
weights were chosen on the seeded Korean click log and MovieLens-100K
(``bench/events_hybrid.py``; figures in ``bench/README.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["CANDIDATES", "DEFAULT_RULE", "DEFAULT_WEIGHTS", "RULES", "Fused", "Parts", "fuse"]

RULES = ("blend", "rrf")
DEFAULT_RULE = "blend"
DEFAULT_WEIGHTS: Mapping[str, float] = {"related": 0.5, "readers": 1.0, "als": 1.0, "bpr": 0.0}
"""How much each source counts in the hybrid (``bpr`` is a mode of its own, not blended in:
it added nothing over ALS in the measurements)."""
CANDIDATES = 200
"""How many candidates each source gives the hybrid."""
_RRF_K = 60.0

Knows = Callable[[npt.NDArray[np.int64]], npt.NDArray[np.bool_]]
"""Which of these items a source could have ranked (a mask)."""


class Parts(Mapping[int, dict[str, float]]):
    """Each item's normalised score from each source that put it in its candidates, worked
    out when asked (a caller looks at its k results, not at every candidate)."""

    def __init__(self, lists: Mapping[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]):
        self._lists = {}
        for name, (ids, values) in lists.items():
            order = np.argsort(ids, kind="stable")
            self._lists[name] = (ids[order], values[order])

    def __getitem__(self, item: int) -> dict[str, float]:
        out = {}
        for name, (ids, values) in self._lists.items():
            pos = int(np.searchsorted(ids, item))
            if pos < len(ids) and ids[pos] == item:
                out[name] = float(values[pos])
        if not out:
            raise KeyError(item)
        return out

    def __iter__(self) -> Iterator[int]:
        return (
            iter(np.unique(np.concatenate([ids for ids, _ in self._lists.values()])).tolist())
            if self._lists
            else iter(())
        )

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass
class Fused:
    """The fused list, best first: item ids, scores, and each item's normalised score from
    each source that put it in its candidates (:class:`Parts`)."""

    ids: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]
    parts: Mapping[int, dict[str, float]]


def fuse(
    lists: Mapping[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]],
    knows: Mapping[str, Knows],
    *,
    weights: Mapping[str, float] = DEFAULT_WEIGHTS,
    rule: str = DEFAULT_RULE,
) -> Fused:
    """Fuse the sources' ``(ids, scores)`` lists (each best first) into one (see the module
    docstring). ``knows[name]`` says which items a source could rank; a source without an
    entry knows exactly the items of its list. Ties are broken by item id."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    used = {name: lst for name, lst in lists.items() if weights.get(name, 0.0) > 0 and len(lst[0])}
    if not used:
        return Fused(np.zeros(0, np.int64), np.zeros(0, np.float64), Parts({}))
    ids = np.unique(np.concatenate([np.asarray(lst[0], np.int64) for lst in used.values()]))
    num = np.zeros(len(ids))
    den = np.zeros(len(ids))
    values: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = {}
    for name, (src_ids, src_scores) in used.items():
        w = weights[name]
        src_ids = np.asarray(src_ids, np.int64)
        src_scores = np.maximum(np.asarray(src_scores, np.float64), 0.0)
        if rule == "rrf":
            value = 1.0 / (_RRF_K + np.arange(1, len(src_ids) + 1))
            value = value * (_RRF_K + 1)  # the first candidate has 1, as in the blend
        else:
            best = float(src_scores.max()) if len(src_scores) else 0.0
            value = src_scores / best if best > 0 else np.zeros(len(src_scores))
        pos = np.searchsorted(ids, src_ids)
        num[pos] += w * value
        known = knows[name](ids) if name in knows else np.isin(ids, src_ids)
        known[pos] = True  # a source knows what it ranked
        den += w * known
        values[name] = (src_ids, np.asarray(value, np.float64))
    scores = np.divide(num, den, out=np.zeros(len(ids)), where=den > 0)
    order = np.lexsort((ids, -scores))
    keep = order[scores[order] > 0]
    return Fused(ids[keep], scores[keep], Parts(values))
