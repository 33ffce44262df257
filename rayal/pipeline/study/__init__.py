"""Many runs: ``rayal compare`` (strategies x seeds, paired statistics and verdicts) and
``rayal tune`` (Ray Tune sweeps)."""
