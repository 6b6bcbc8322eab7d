"""Content: from a document's text to its terms, weights, fingerprint and index entries.

``tokenize`` (Mecab nouns) → ``analyzer`` (term counts, TF-IDF weights, fingerprints, under
one ``scheme``) → ``tfidf`` (DF snapshots) and ``simhash`` (64-bit fingerprints) →
``hamming`` (the fingerprint index) and ``related`` (the related-posts impact index).
Each step depends only on the document and, from the weights on, on a DF snapshot.
"""
