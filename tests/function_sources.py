"""Handler sources that more than one test deploys to `lambdakit local`."""

from __future__ import annotations

# Records with "mb" hold that much memory for a moment, long enough for the local service's
# memory watch to see it: past a 128 MB function's memory, the batch runs out of memory.
MEMORY_HOG = """
import time

def handler(event, context):
    out = []
    for item in event["Items"]:
        if item.get("mb"):
            block = bytearray(item["mb"] * 1024 * 1024)
            for i in range(0, len(block), 4096):
                block[i] = 1
            time.sleep(0.3)
            del block
        out.append(item["i"] * 10)
    return out
"""
