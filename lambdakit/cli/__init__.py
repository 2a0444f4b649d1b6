"""The `lambdakit` command: local, run, demo and lab."""
