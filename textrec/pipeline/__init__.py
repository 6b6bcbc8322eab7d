"""The pipeline over the store: read records, ingest them, build.

``records`` validates JSON Lines input; ``build`` holds ingest and the one build sequence,
which runs its two heavy passes in process or, through ``runners``, as the mrjob jobs of
:mod:`textrec.jobs` (inline, local, Spark, Hadoop, EMR).
"""
