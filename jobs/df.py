"""Run the document frequency job: ``python jobs/df.py -r RUNNER docs.jsonl > df.json``.

A thin script over :class:`textrec.jobs.df.MRDocumentFrequency` (textrec must be installed
where the tasks run); see that module for the input and output.
"""

from textrec.jobs.df import MRDocumentFrequency

if __name__ == "__main__":
    MRDocumentFrequency.run()
