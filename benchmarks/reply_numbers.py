"""Benchmark of reading replies with every digit kept (aws/reply.read_response).

Prints one JSON object: microseconds per 100-output reply for replies whose numbers orjson
reads exactly (short floats; floats of 17 digits, as Python writes random floats) and for a
reply that needs the exact re-read (decimals written with a trailing zero, wide ints), each
beside orjson.loads alone; nothing is asserted.

    python benchmarks/reply_numbers.py [--outputs 100] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import random
import timeit

import orjson

from lambdakit.aws.reply import read_response

TARGETS = {
    "long_floats_vs_orjson": "<= 3 (the check, not a json.loads re-read, on the common path)"
}


def replies(outputs: int) -> dict[str, bytes]:
    """The reply bodies measured, each a list of `outputs` dicts."""
    rng = random.Random(1)
    short = [{"id": i, "score": i / 4, "label": "x"} for i in range(outputs)]
    long = [{"id": i, "score": rng.random(), "p": rng.random() * 100} for i in range(outputs)]
    exact = ", ".join(
        f'{{"id": {10**25 + i}, "amount": {i}.10, "label": "x"}}' for i in range(outputs)
    )
    return {
        "short_floats": json.dumps(short).encode(),
        "long_floats": json.dumps(long).encode(),
        "re_read": f"[{exact}]".encode(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    figures: dict[str, float] = {}
    for name, body in replies(args.outputs).items():

        def ours(body: bytes = body) -> None:
            read_response(body, None, args.outputs)

        def bare(body: bytes = body) -> None:
            orjson.loads(body)

        number = 50
        figures[f"{name}_us"] = (
            min(timeit.repeat(ours, number=number, repeat=args.repeat)) / number * 1e6
        )
        figures[f"{name}_orjson_us"] = (
            min(timeit.repeat(bare, number=number, repeat=args.repeat)) / number * 1e6
        )
    figures["long_floats_vs_orjson"] = figures["long_floats_us"] / figures["long_floats_orjson_us"]
    rounded = {key: round(value, 1) for key, value in figures.items()}
    print(json.dumps({"outputs": args.outputs, "figures": rounded, "targets": TARGETS}, indent=2))


if __name__ == "__main__":
    main()
