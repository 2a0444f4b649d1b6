"""What a finished run is and shows: RunResult, outputs, storage, report, plots, cost."""
