"""Smoke check of a textrec installation: nouns and fingerprint of one Korean sentence, and
which compiled paths are in use (nouns from MeCab's nodes, the scan kernel).

docker/build-local.sh runs this inside the image and with the host's Python, and requires the
two outputs to be identical. The sentence and the DF snapshot are those of the golden test in
tests/test_simhash.py, whose fingerprint is 779921e1fdd077c4 (scheme simhash64-v1).
"""

import json
import sys

from textrec import SCHEME, Analyzer, DFSnapshot, default_tokenizer, fingerprint_hex
from textrec.content.hamming import kernel_name

SENTENCE = (
    "서울시는 내년부터 시내버스 요금을 인상한다고 발표했다. 시민들은 버스 요금 인상에 반대했다."
)
SNAPSHOT = DFSnapshot(
    n_docs=10,
    df={
        "서울시": 2,
        "내년": 5,
        "시내버스": 1,
        "요금": 3,
        "인상": 3,
        "발표": 6,
        "시민": 4,
        "버스": 3,
        "반대": 2,
    },
)

analyzer = Analyzer()
counts = analyzer.term_counts(SENTENCE)
result = {
    "python": ".".join(map(str, sys.version_info[:2])),
    "nouns": default_tokenizer()(SENTENCE),
    "nouns_from_nodes": default_tokenizer().uses_direct,
    "scan_kernel": kernel_name(),
    "scheme": SCHEME,
    "snapshot": SNAPSHOT.id,
    "fingerprint": fingerprint_hex(analyzer.fingerprint_text(SENTENCE, SNAPSHOT)),
    "fingerprint_batch": fingerprint_hex(analyzer.fingerprints([counts], SNAPSHOT)[0]),
}
print(json.dumps(result, ensure_ascii=False, sort_keys=True))
