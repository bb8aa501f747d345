"""py-rattler, pixi's engine, as a user's client: solve from a channel, then install.

::

    python -m tests.rattler_client CHANNEL_URL PREFIX SPEC... [--no-sharded]

Run in a process of its own, as pixi would be, with rattler's own configuration: its
credentials come from ``RATTLER_AUTH_FILE`` (``{"HOST": {"CondaToken": "..."}}``,
``{"BasicHTTP": {...}}`` or ``{"BearerToken": "..."}``), or from the channel URL itself.
Its caches go to ``RATTLER_CACHE_DIR``.  Prints one JSON line: the records installed,
or the error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys


async def main(argv: list[str]) -> int:
    import rattler
    from rattler.networking import AuthenticationMiddleware, Client

    parser = argparse.ArgumentParser()
    parser.add_argument("channel")
    parser.add_argument("prefix")
    parser.add_argument("specs", nargs="+")
    parser.add_argument("--no-sharded", action="store_true")
    parser.add_argument("--platform", default="linux-64")
    args = parser.parse_args(argv)
    cache = os.environ["RATTLER_CACHE_DIR"]
    client = Client([AuthenticationMiddleware()])
    gateway = rattler.Gateway(
        cache_dir=os.path.join(cache, "repodata"),
        default_config=rattler.SourceConfig(sharded_enabled=not args.no_sharded),
        client=client,
    )
    try:
        records = await rattler.solve(
            sources=[args.channel],
            specs=args.specs,
            gateway=gateway,
            platforms=[args.platform, "noarch"],
        )
        await rattler.install(
            records,
            target_prefix=args.prefix,
            cache_dir=os.path.join(cache, "pkgs"),
            client=client,
            show_progress=False,
        )
    except Exception as exc:  # the client's own error, for the test to read
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    installed = [
        {"name": r.name.normalized, "version": str(r.version), "url": str(r.url),
         "sha256": r.sha256.hex() if r.sha256 else None}
        for r in records
    ]  # fmt: skip
    print(json.dumps({"installed": sorted(installed, key=lambda r: r["name"])}))
    return 0


if __name__ == "__main__":
    code = asyncio.run(main(sys.argv[1:]))
    sys.stdout.flush()
    # py-rattler's runtime threads can still be running when the interpreter finalizes,
    # which then aborts now and again (SIGABRT after the answer was printed): the answer
    # is out, so leave without finalizing.
    os._exit(code)
