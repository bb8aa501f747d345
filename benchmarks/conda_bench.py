"""What a conda subdir of thousands of files costs to render and to serve.

::

    python benchmarks/conda_bench.py                  # 2000 files of 200 names in noarch
    python benchmarks/conda_bench.py --files 5000 --names 500

It fills one subdir directly through :class:`~private_channels.conda.store.CondaStore`
(records only: the renderers never open a package; the time it takes is the upload's
commit, one compare-and-swap of the subdir's document, which grows with the subdir),
then measures, in-process through webtest on a filesystem storage:

- the first answer after a change (the snapshot read, repodata.json and its .zst, or the
  shard index and every shard rendered), which is what the request after an upload pays;
- requests per second once rendered: repodata.json, repodata.json.zst, the shard index,
  one shard, and a revalidation (304), each a ``stat`` and a cache lookup.
"""

from __future__ import annotations

import argparse
import io
import random
import tempfile
import time
from collections.abc import Callable

import msgpack
import webtest
import zstandard

from private_channels import ChannelRegistry, Scope, TokenStore, make_app
from private_channels.conda.store import CondaRecord, CondaStore
from private_channels.core.blobs import Digests
from private_channels.storage import FileSystemStorage


def fill(storage: FileSystemStorage, files: int, names: int) -> None:
    channel = ChannelRegistry(storage).create("team")
    store = CondaStore(storage)
    rng = random.Random(0)
    for i in range(files):
        name = f"pkg{i % names}"
        version = f"1.{i // names}"
        filename = f"{name}-{version}-0.conda"
        digest = f"{rng.getrandbits(256):064x}"
        index = {"name": name, "version": version, "build": "0", "build_number": 0,
                 "subdir": "noarch", "noarch": "generic", "license": "MIT",
                 "depends": [f"pkg{rng.randrange(names)} >=1.0", "python >=3.9"],
                 "constrains": [], "timestamp": 1_700_000_000_000 + i}  # fmt: skip
        record = CondaRecord.uploaded(
            filename, Digests(10_000 + i, digest, digest[:32], digest), None,
            md5=digest[:32], subdir="noarch", name=name, index=index,
        )  # fmt: skip
        store.add(channel, record, io.BytesIO(b"x"))


def rate(call: Callable[[], object], seconds: float = 1.0) -> float:
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call()
        count += 1
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--names", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        storage = FileSystemStorage(tmp)
        started = time.perf_counter()
        fill(storage, args.files, args.names)
        print(f"filled {args.files} records in {time.perf_counter() - started:.1f} s")
        token, _ = TokenStore(storage).create(channels=["team"], scope=Scope.READ)
        headers = {"X-Auth": token}
        base = "/team/noarch"

        def get(path: str, **extra: str) -> webtest.TestResponse:
            return app.get(f"{base}/{path}", headers={**headers, **extra}, status="*")

        for first in ("repodata.json", "repodata.json.zst", "repodata_shards.msgpack.zst"):
            app = webtest.TestApp(make_app(storage))  # a fresh process: nothing cached
            started = time.perf_counter()
            body = get(first).body
            print(f"first {first}: {(time.perf_counter() - started) * 1000:.0f} ms, "
                  f"{len(body) / 1024:.0f} KiB")  # fmt: skip
        app = webtest.TestApp(make_app(storage))
        json_etag = get("repodata.json").etag
        raw = get("repodata_shards.msgpack.zst").body
        index = msgpack.unpackb(zstandard.ZstdDecompressor().stream_reader(raw).read())
        one = next(iter(index["shards"].values())).hex()
        for label, call in [
            ("repodata.json", lambda: get("repodata.json")),
            ("repodata.json.zst", lambda: get("repodata.json.zst")),
            ("shard index", lambda: get("repodata_shards.msgpack.zst")),
            ("one shard", lambda: get(f"shards/{one}.msgpack.zst")),
            ("304 on repodata.json",
             lambda: get("repodata.json", **{"If-None-Match": f'"{json_etag}"'})),
        ]:  # fmt: skip
            print(f"{label}: {rate(call):.0f} requests/s")


if __name__ == "__main__":
    main()
