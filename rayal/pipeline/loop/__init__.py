"""One active-learning run: score -> select -> annotate (the oracle) -> train -> evaluate,
round by round, resumable; the full-supervision reference it is measured against."""
