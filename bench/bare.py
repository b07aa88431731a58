"""The baseline for bench/run.py: a bare QuartTrio app on Hypercorn's trio worker that reads the body and answers
200 — what the webhook gateway would cost with no checks, no storage and no actors. Prints its port, serves until
killed.

    uv run python bench/bare.py
"""

from __future__ import annotations

import json
import sys
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

app = QuartTrio("bare")


@app.post("/webhooks/helius")
async def helius() -> Response:
    await request.get_data(cache=False)
    return Response(json.dumps({"accepted": 1, "duplicates": 0}), status=200, mimetype="application/json")


async def main() -> None:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(partial(serve, app, config))
        print(json.dumps({"port": int(str(bound[0]).rsplit(":", 1)[1])}), flush=True)


if __name__ == "__main__":
    try:
        trio.run(main)
    except KeyboardInterrupt:
        sys.exit(0)
