"""Fingerprint schemes: one name for the settings that make a store's terms and fingerprints.

A scheme name is the base derivation (``simhash64-v2``, :mod:`textrec.content.simhash`;
its version is the term scheme's, :mod:`textrec.content.tokenize`), optionally followed by
``+`` and the non-default choices, comma-separated, in this order::

    simhash64-v2                           Mecab terms (v2), raw TF, title terms counted once
    simhash64-v1                           Mecab nouns as KoNLPy gives them (stores made before v2)
    simhash64-v2+tf=log                    1 + ln tf
    simhash64-v2+tf=log,minlen=2,maxdf=0.5 Weighting(tf="log", min_term_length=2, max_df_ratio=0.5)
    simhash64-v2+title=3                   Analyzer(title_weight=3)
    simhash64-v2+tok=whitespace            Analyzer(tokenizer=whitespace_tokenizer)

:func:`scheme_name` writes such a name and :func:`parse_scheme` reads it back, so every entry
point (the :class:`~textrec.recommend.Recommender`, ``textrec check``, the CLI, the server,
the mrjob jobs and runners) rebuilds the analyzer from the scheme the store records instead
of assuming the default. A tokenizer of your own has no such name: give the
:class:`~textrec.content.analyzer.Analyzer` a ``scheme`` name of your own, and pass that
analyzer from Python; the CLI, the server and the jobs refuse such a store
(:class:`SchemeUnavailableError`), since they cannot rebuild its tokenizer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from textrec.content.simhash import SCHEMES, SchemeMismatchError
from textrec.content.tfidf import Weighting
from textrec.content.tokenize import TERMS_VERSION

if TYPE_CHECKING:
    from textrec.content.analyzer import Analyzer

__all__ = [
    "TOKENIZERS",
    "SchemeSettings",
    "SchemeUnavailableError",
    "analyzer_for",
    "parse_scheme",
    "scheme_name",
    "upgraded_scheme",
]

TOKENIZERS = ("mecab", "whitespace")
"""Tokenizers that a scheme name can name: ``mecab`` (the default) and ``whitespace``."""


class SchemeUnavailableError(ValueError):
    """A scheme name that textrec cannot turn back into an analyzer."""


@dataclass(frozen=True)
class SchemeSettings:
    """What a scheme name stands for."""

    tokenizer: str = "mecab"
    weighting: Weighting = field(default_factory=Weighting)
    title_weight: int = 1
    version: int = TERMS_VERSION
    """The term scheme (1: KoNLPy's nouns; 2: :data:`~textrec.content.tokenize.V2_TAGS`)."""


_BASE = re.compile(r"simhash64-v([0-9]+)")


def scheme_name(settings: SchemeSettings) -> str:
    """The scheme name of ``settings`` (see the module docstring)."""
    parts = [settings.weighting.tag] if settings.weighting.tag else []
    if settings.title_weight != 1:
        parts.append(f"title={settings.title_weight}")
    if settings.tokenizer != "mecab":
        parts.append(f"tok={settings.tokenizer}")
    base = f"simhash64-v{settings.version}"
    return f"{base}+{','.join(parts)}" if parts else base


def upgraded_scheme(name: str) -> str | None:
    """The scheme that a rebuild under the current default turns a store of scheme ``name``
    into: the same settings under the current term scheme. None when ``name`` is current
    already, or is not a name textrec can rebuild (a custom tokenizer's)."""
    try:
        settings = parse_scheme(name)
    except SchemeUnavailableError:
        return None
    if settings.version == TERMS_VERSION:
        return None
    return scheme_name(
        SchemeSettings(settings.tokenizer, settings.weighting, settings.title_weight)
    )


def parse_scheme(name: str) -> SchemeSettings:
    """The settings a scheme name stands for; :class:`SchemeUnavailableError` when the name
    is not one that :func:`scheme_name` writes (a custom tokenizer's own name, say)."""
    base, _, tail = name.partition("+")
    if base not in SCHEMES:
        raise SchemeUnavailableError(
            f"scheme {name!r} is not a textrec scheme name (it does not start with one of "
            f"{', '.join(repr(b) for b in SCHEMES)}): "
            f"it was named by the analyzer of a custom tokenizer, which textrec cannot rebuild "
            f"from the name. Open the store from Python with that analyzer: "
            f"Recommender(url, analyzer=Analyzer(tokenizer=..., scheme={name!r}))."
        )
    options: dict[str, str] = {}
    for part in filter(None, tail.split(",")):
        key, sep, value = part.partition("=")
        if not sep or key in options:
            raise SchemeUnavailableError(f"scheme {name!r}: cannot read {part!r}")
        options[key] = value
    try:
        weighting = Weighting(
            tf=options.pop("tf", "raw"),  # type: ignore[arg-type]  # checked by Weighting
            min_term_length=int(options.pop("minlen", "1")),
            max_df_ratio=float(options["maxdf"]) if "maxdf" in options else None,
        )
        options.pop("maxdf", None)
        title_weight = int(options.pop("title", "1"))
        tokenizer = options.pop("tok", "mecab")
    except ValueError as exc:
        raise SchemeUnavailableError(f"scheme {name!r}: {exc}") from exc
    if options or tokenizer not in TOKENIZERS:
        unknown = ", ".join(options) or f"tok={tokenizer}"
        raise SchemeUnavailableError(f"scheme {name!r}: unknown setting {unknown}")
    match = _BASE.fullmatch(base)
    assert match is not None  # every name in SCHEMES has that form
    settings = SchemeSettings(tokenizer, weighting, title_weight, int(match.group(1)))
    if scheme_name(settings) != name:
        raise SchemeUnavailableError(
            f"scheme {name!r} is not in canonical form (expected {scheme_name(settings)!r})"
        )
    return settings


def analyzer_for(stored: str | None, analyzer: Analyzer | None = None, *, where: str) -> Analyzer:
    """The analyzer for a store whose scheme is ``stored`` (None: nothing stored yet).

    Without ``analyzer``, the one the stored scheme names (the default analyzer for a new
    store). With one, it must make the stored scheme: a conflicting request is refused with
    :class:`~textrec.content.simhash.SchemeMismatchError` naming both. ``where`` names the
    store in messages.
    """
    from textrec.content.analyzer import Analyzer

    if analyzer is None:
        return Analyzer() if stored is None else Analyzer.from_scheme(stored)
    if stored is not None and analyzer.scheme != stored:
        raise SchemeMismatchError(
            f"{where} holds terms and fingerprints of scheme {stored!r}, but the analyzer "
            f"given makes scheme {analyzer.scheme!r}; open it without an analyzer (or with one "
            f"of scheme {stored!r}), or ingest into a new store to use {analyzer.scheme!r}"
        )
    return analyzer
