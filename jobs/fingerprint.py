"""Run the fingerprint job:
``python jobs/fingerprint.py -r RUNNER --df-snapshot df.json docs.jsonl > fingerprints.jsonl``.

A thin script over :class:`textrec.jobs.fingerprint.MRFingerprint` (textrec must be
installed where the tasks run); see that module for the input and output.
"""

from textrec.jobs.fingerprint import MRFingerprint

if __name__ == "__main__":
    MRFingerprint.run()
