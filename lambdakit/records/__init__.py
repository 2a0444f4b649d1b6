"""Records in, batches out: sources become validated streams, cut by count and by bytes."""
