"""The related-posts index's term dictionary (textrec.content.lexicon), compiled and not."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import missing
from textrec.content import lexicon as lexicon_module
from textrec.content.lexicon import Lexicon
from textrec.content.related import RelatedIndex

TERMS = sorted(
    ["docker", "k8s", "가격", "가을", "강", "것", "국민", "청원", "😀", "a", "ab", "b", "\ud800"]
)


@pytest.fixture(params=["compiled", "python"])
def kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(lexicon_module, "_kernel", None)
    elif lexicon_module._compiled is None:
        missing("compiled", "textrec._related is not built here")
    return str(request.param)


def test_ids_of_sorted_terms_are_their_positions(kernel: str) -> None:
    lex = Lexicon(TERMS)
    assert len(lex) == len(TERMS) and not lex._extra  # all in the blob
    assert lex.ids(TERMS).tolist() == list(range(len(TERMS)))
    # prefixes, extensions and strangers are not terms
    assert lex.ids(["", "가", "가격표", "c", "국", "docke", "dockers"]).tolist() == [-1] * 7
    assert lex.terms() == TERMS


def test_terms_out_of_order_and_added_later_keep_their_ids(kernel: str) -> None:
    given = ["b", "c", "a", "d", "c2"]  # "a" breaks the order: it and the rest go in the dict
    lex = Lexicon(given)
    assert lex.ids(given).tolist() == [0, 1, 2, 3, 4]
    assert lex.add(["z", "b", "y", "z"]).tolist() == [5, 0, 6, 5]
    assert lex.terms() == [*given, "z", "y"]
    assert Lexicon(lex.terms()).ids(["y", "c2", "b"]).tolist() == [6, 4, 0]  # as saved, read


def test_a_copy_shares_the_blob_but_not_later_terms(kernel: str) -> None:
    lex = Lexicon(TERMS)
    copy = lex.copy()
    lex.add(["새말"])
    assert copy.ids(["새말"]).tolist() == [-1] and len(copy) == len(TERMS)
    assert copy._blob is lex._blob


def test_a_term_given_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="'b' is given twice"):
        Lexicon(["a", "b", "c", "b"])
    with pytest.raises(TypeError, match="terms must be str, got int"):
        Lexicon(["a", 3])  # type: ignore[list-item]


@pytest.mark.parametrize("vocabulary", [["t0", "t2", "t0"], ["t0", 7]])
def test_a_file_with_a_bad_vocabulary_is_refused(tmp_path: Path, vocabulary: list[object]) -> None:
    path = str(tmp_path / "r.related")
    index = RelatedIndex(["t0", "t2"])
    index.add([1, 2], [{"t0": 1.0}, {"t2": 1.0}])
    index.save(path, scheme="s", snapshot_id="x")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["vocabulary"] = np.frombuffer(json.dumps(vocabulary).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ValueError, match=r"malformed related-posts index header.*term dictionary"):
        RelatedIndex.load(path)


def test_it_is_far_smaller_than_a_dict() -> None:
    terms = sorted({f"용어{i}" for i in range(20000)})
    lex = Lexicon(terms)
    as_dict = sys.getsizeof({t: i for i, t in enumerate(terms)}) + sum(map(sys.getsizeof, terms))
    assert lex.nbytes < as_dict / 5
    assert lex.nbytes == lex._blob.nbytes + lex._starts.nbytes
    assert lex.ids(terms[::997]).tolist() == list(range(0, 20000, 997))


def test_corrupt_offsets_are_refused() -> None:
    if lexicon_module._compiled is None:
        missing("compiled", "textrec._related is not built here")
    lex = Lexicon(TERMS)
    out = np.zeros(1, np.int64)
    bad = lex._starts.copy()
    bad[len(TERMS) // 2] = 10**6  # the bisection's first probe
    with pytest.raises(ValueError, match="term dictionary: term offsets out of range"):
        lexicon_module._compiled.lookup(lex._blob, bad, ["가을"], out)
    with pytest.raises(ValueError, match="do not span the terms"):
        lexicon_module._compiled.lookup(lex._blob[:-1], lex._starts, ["가을"], out)
    with pytest.raises(TypeError, match="terms must be str"):
        lexicon_module._compiled.lookup(lex._blob, lex._starts, [b"x"], out)


def test_the_index_counts_its_term_dictionary() -> None:
    index = RelatedIndex(TERMS)
    before = index.nbytes
    index.add([1], [{"새말": 1.0, "docker": 0.5}])
    assert index.nbytes > before  # postings, and "새말" in the dict of added terms
    assert index.terms() == [*TERMS, "새말"]
    assert index.search({"새말": 1.0}, 5)[0].tolist() == [1]
