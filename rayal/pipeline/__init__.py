"""Ray glue: the scoring job (and, later, select / retrain / loop / tune)."""
