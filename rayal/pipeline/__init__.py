"""Ray glue, the layer above the pure cores: three jobs in three subpackages.

* :mod:`rayal.pipeline.score` -- the scoring job: frame sources, decode, scoring actors
  (a Ray Data job, or the run-long ``ScoringPool``), score tables written in committed parts.
* :mod:`rayal.pipeline.loop` -- one active-learning run: score -> select -> annotate ->
  train -> evaluate, round by round (training, committees, VAAL, the reference, reports).
* :mod:`rayal.pipeline.study` -- many runs: ``rayal compare`` (paired statistics, verdicts)
  and ``rayal tune``.

Beside them: :mod:`~rayal.pipeline.runtime` (Ray start-up), :mod:`~rayal.pipeline.storage`
(run-directory files on any storage), :mod:`~rayal.pipeline.jobs_client` (Ray job submission).
"""
