"""textrec: content-based related posts for Korean text.

Mecab nouns → TF-IDF → 64-bit SimHash fingerprints from SHA-512 hyperplanes → exact Hamming
ranking in one in-memory array. See the README for the pipeline and the fingerprint definition.
"""

from importlib.metadata import PackageNotFoundError, version

from .build import build, ingest, load_index
from .corpus import Record, RecordError, read_records
from .index import HammingIndex, IndexFileError
from .pipeline import Analyzer
from .recommend import Match, Recommender, UnknownDocumentError
from .simhash import (
    SCHEME,
    SchemeMismatchError,
    estimated_cosine,
    fingerprint_hex,
    hamming,
    parse_fingerprint,
    simhash,
)
from .store import NotBuiltError, Store
from .tfidf import DFSnapshot, Weighting, idf, tfidf_weights
from .tokenize import (
    MecabNounTokenizer,
    TokenizerUnavailableError,
    default_tokenizer,
    normalize_term,
    whitespace_tokenizer,
)

try:
    __version__ = version("textrec")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "SCHEME",
    "Analyzer",
    "DFSnapshot",
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
