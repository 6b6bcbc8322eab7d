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


@pytest.mark.parametrize("n", [1, 15, 16, 17, 33, 1000])
def test_every_place_in_a_block_is_found(kernel: str, n: int) -> None:
    """Blocks of 16 terms sharing prefixes of every length (a block's first term shares
    nothing), lengths past one varint byte, and keys before, between and after them."""
    words = sorted({"국" * (i % 7) + f"민{i:04d}" + "x" * (i % 150) for i in range(n)})
    lex = Lexicon(words)
    assert len(lex._starts) == -(-len(words) // lexicon_module.BLOCK) + 1
    assert lex.ids(words).tolist() == list(range(len(words)))
    strangers = [
        "",
        "\x00",
        "국",
        "힣힣",
        *(w + "\x00" for w in words[::7]),
        *(w[:-1] for w in words[::5]),
    ]
    strangers = [w for w in strangers if w not in set(words)]
    assert lex.ids(strangers).tolist() == [-1] * len(strangers)
    assert lex.terms() == words


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lookup_agrees_with_a_dict_on_words_that_are_prefixes_of_each_other(
    kernel: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    alphabet = ["a", "b", "가", "\x00", "😀"]

    def word() -> str:
        return "".join(rng.choice(alphabet, size=int(rng.integers(1, 7))).tolist())

    words = sorted({word() for _ in range(400)})
    lex, by_word = Lexicon(words), {w: i for i, w in enumerate(words)}
    keys = [word() for _ in range(2000)]
    assert lex.ids(keys).tolist() == [by_word.get(k, -1) for k in keys]


def test_front_coding_in_bytes() -> None:
    lex = Lexicon(["ab", "abc", "abd", "b"])
    # varint(shared), varint(length of the rest), the rest
    assert lex._blob.tobytes() == b"\x00\x02ab\x02\x01c\x02\x01d\x00\x01b"
    assert lex._starts.tolist() == [0, 13]


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
    assert lex.nbytes < as_dict / 20
    assert lex.nbytes == lex._blob.nbytes + lex._starts.nbytes
    assert lex.ids(terms[::997]).tolist() == list(range(0, 20000, 997))


def test_a_corrupt_dictionary_is_refused() -> None:
    if lexicon_module._compiled is None:
        missing("compiled", "textrec._related is not built here")
    lex = Lexicon(TERMS)
    out = np.zeros(1, np.int64)
    lookup, n, block = lexicon_module._compiled.lookup, len(TERMS), lexicon_module.BLOCK
    with pytest.raises(ValueError, match="do not span the terms"):
        lookup(lex._blob[:-1], lex._starts, n, block, ["가을"], out)
    with pytest.raises(ValueError, match="inconsistent"):
        lookup(lex._blob, lex._starts, n + block, block, ["가을"], out)
    bad = lex._blob.copy()
    bad[0] = 0x7F  # the first term claims to share 127 bytes with nothing
    with pytest.raises(ValueError, match="a block is corrupt"):
        lookup(bad, lex._starts, n, block, ["가을"], out)
    bad = lex._blob.copy()
    bad[1] = 0xFF  # its length runs past the block
    with pytest.raises(ValueError, match="a block is corrupt"):
        lookup(bad, lex._starts, n, block, ["가을"], out)
    with pytest.raises(TypeError, match="terms must be str"):
        lookup(lex._blob, lex._starts, n, block, [b"x"], out)


def test_the_index_counts_its_term_dictionary() -> None:
    index = RelatedIndex(TERMS)
    before = index.nbytes
    index.add([1], [{"새말": 1.0, "docker": 0.5}])
    assert index.nbytes > before  # postings, and "새말" in the dict of added terms
    assert index.terms() == [*TERMS, "새말"]
    assert index.search({"새말": 1.0}, 5)[0].tolist() == [1]
