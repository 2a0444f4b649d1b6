"""The wire to Lambda: client, discovery, the Invoke and HTTP invokers, the reply, deploy."""
