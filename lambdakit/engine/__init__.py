"""The engine: run()/start(), scheduling, settlement, retries, the cache and progress."""
