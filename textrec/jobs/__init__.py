"""The mrjob jobs of the build: :mod:`textrec.jobs.df` and :mod:`textrec.jobs.fingerprint`.

They ship inside the package so that runners and cluster nodes import them from an installed
textrec; the repository's top-level ``jobs/`` folder holds the thin scripts users run.
"""
