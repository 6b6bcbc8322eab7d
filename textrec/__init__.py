"""textrec: content-based related posts for Korean text.

Mecab nouns → TF-IDF → 64-bit SimHash fingerprints from SHA-512 hyperplanes → exact Hamming
ranking in one in-memory array. See the README for the pipeline and the fingerprint definition.
"""

from importlib.metadata import PackageNotFoundError, version

from textrec.content.analyzer import Analyzer
from textrec.content.hamming import HammingIndex, IndexFileError
from textrec.content.simhash import (
    SCHEME,
    SchemeMismatchError,
    estimated_cosine,
    fingerprint_hex,
    hamming,
    parse_fingerprint,
    simhash,
)
from textrec.content.tfidf import DFSnapshot, Weighting, idf, tfidf_weights
from textrec.content.tokenize import (
    MecabNounTokenizer,
    TokenizerUnavailableError,
    default_tokenizer,
    normalize_term,
    whitespace_tokenizer,
)
from textrec.filters import NO_FILTERS, Filters
from textrec.pipeline.build import build, load_index
from textrec.pipeline.ingest import ingest
from textrec.pipeline.records import Record, RecordError, read_records
from textrec.recommend import Match, Recommender, UnknownDocumentError
from textrec.store.sql import NotBuiltError, Store

try:
    __version__ = version("textrec")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "NO_FILTERS",
    "SCHEME",
    "Analyzer",
    "DFSnapshot",
    "Filters",
    "HammingIndex",
    "IndexFileError",
    "Match",
    "MecabNounTokenizer",
    "NotBuiltError",
    "Recommender",
    "Record",
    "RecordError",
    "SchemeMismatchError",
    "Store",
    "TokenizerUnavailableError",
    "UnknownDocumentError",
    "Weighting",
    "__version__",
    "build",
    "default_tokenizer",
    "estimated_cosine",
    "fingerprint_hex",
    "hamming",
    "idf",
    "ingest",
    "load_index",
    "normalize_term",
    "parse_fingerprint",
    "read_records",
    "simhash",
    "tfidf_weights",
    "whitespace_tokenizer",
]
