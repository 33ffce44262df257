"""The scoring job: frames -> decode -> scoring actors (Ray Data, or the run-long
``ScoringPool``) -> score tables written in committed part sets."""
