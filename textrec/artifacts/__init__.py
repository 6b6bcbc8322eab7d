"""Derived files: one lifecycle for every file textrec derives from the store.

The store is the source of truth; an index file beside it (and, later, a model file) only
saves rebuilding. Every such file follows the same rules:

- **Header.** It records the scheme and DF snapshot it was made under, and its
  *provenance*: the :class:`~textrec.store.sql.StoreStamp` (store identity, generation and
  write tag) read from the store *before* the data it holds was read.
- **Matches the store** (:func:`freshness`): same scheme and snapshot, and the same stamp.
  A file of the same store at an older generation is *behind*: it is caught up with the
  writes since (appends and removals) and verified exactly against the store's ids. A file
  of another store, or of a copy that diverged (same identity, another write tag), is
  *foreign* and rebuilt, as is a file that cannot be read (with a warning).
- **Atomic write** (:func:`~textrec.artifacts.atomic.atomic_write`): a crash leaves the old
  file or the new one.

:func:`open_derived` applies these rules to any file; :mod:`textrec.artifacts.indexes` to
the two index files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from textrec.store.sql import StoreStamp

__all__ = ["Freshness", "freshness", "open_derived"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Freshness(Enum):
    """How a derived file stands against the store."""

    CURRENT = "current"
    """Made at the store's present stamp: use it as it is."""
    BEHIND = "behind"
    """Made from this store at an older generation (or by an older textrec, which recorded
    no stamp): catch it up with the writes since."""
    FOREIGN = "foreign"
    """Made from another store, or from a copy of this one that diverged: rebuild it."""


def freshness(provenance: str, stamp: StoreStamp) -> Freshness:
    """Compare a file's recorded provenance with the store's stamp now."""
    from textrec.store.sql import StoreStamp

    made = StoreStamp.from_label(provenance) if provenance else None
    if made is None:
        return Freshness.BEHIND
    if made == stamp:
        return Freshness.CURRENT
    if made.identity == stamp.identity and made.generation < stamp.generation:
        return Freshness.BEHIND
    return Freshness.FOREIGN


def open_derived(
    path: str | None,
    *,
    what: str,
    read: Callable[[str], tuple[T, str, str, str]],
    expect: tuple[str, str],
    stamp: StoreStamp,
    catch_up: Callable[[T], bool],
    build: Callable[[], T],
) -> tuple[T, bool]:
    """A derived object from the file at ``path`` when that file can serve, else built.

    ``read(path)`` returns ``(object, scheme, snapshot id, provenance)`` and raises OSError,
    ValueError or EOFError for a file it cannot read; ``expect`` is the store's
    ``(scheme, snapshot id)``; ``catch_up(object)`` applies the store's writes since the
    file was made and says whether the result matches the store; ``build()`` makes the
    object from the store. Returns ``(object, whether the file matched as it was)``: when
    False, the caller should save the object (it was caught up or rebuilt).
    """
    if path is None or not os.path.exists(path):
        return build(), False
    try:
        value, scheme, snapshot_id, provenance = read(path)
    except (OSError, ValueError, EOFError) as exc:
        log.warning("%s %s not used (%s); rebuilding it from the store", what, path, exc)
        return build(), False
    if (scheme, snapshot_id) != expect:
        log.info("%s %s is of another scheme, DF snapshot or setting; rebuilding it", what, path)
        return build(), False
    state = freshness(provenance, stamp)
    if state is Freshness.CURRENT:
        return value, True
    if state is Freshness.BEHIND and catch_up(value):
        log.info("%s %s was behind the store; applied the writes since", what, path)
        return value, False
    log.info("%s %s does not match the store (%s); rebuilding it", what, path, state.value)
    return build(), False
