"""Deploy sync on the local cloud: full upload vs. unchanged redeploy, parallel vs. sequential.

    /work/venv/bin/python benchmarks/deploy_sync.py [--files 500] [--repeat 3] [--latency-ms 0] [--json]

Builds a project whose ``inference_server/`` holds N files (sizes 0.5-40 KiB, nested
folders, about 10 MiB in all), starts an in-process local cloud, provisions, then times:

* ``full``: ``sync_folder`` with no manifest on the share (every file uploaded, 8 workers);
* ``unchanged``: the same sync again (manifest read, local files stat'ed -- the hash cache
  in ``.aitk/sync-hashes.json`` skips re-hashing unchanged files -- nothing sent);
* ``deploy_unchanged``: the whole ``CloudSession.deploy(restart=False)`` path of a redeploy
  (storage key cached by the session, share client, sync, events);
* ``sequential``: a full upload with 1 worker, to compare with ``full``.

Goal: ``full / unchanged`` >= 50. Medians over ``--repeat`` runs are printed.

The local cloud runs in this process, so client and server share one interpreter (and
its GIL) on the same cores: without ``--latency-ms`` uploads are CPU-bound and 8 workers
cannot beat 1. ``--latency-ms 20`` adds a round trip per Files request, as a real share
has, which is what the parallel upload is for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aitk_tui.cloud.deploy import MANIFEST_PATH, sync_folder  # noqa: E402
from aitk_tui.cloud.session import CloudSession  # noqa: E402
from aitk_tui.config.inference_config import InferenceConfig  # noqa: E402
from aitk_tui.config.parameters import ParametersDocument  # noqa: E402
from aitk_tui.events import Done, Failed  # noqa: E402
from aitk_tui.project import Project  # noqa: E402


def make_project(root: Path, n_files: int, seed: int = 7) -> int:
    shutil.copytree(REPO / "infra", root / "infra")
    rng = random.Random(seed)
    srv = root / "inference_server"
    total = 0
    for i in range(n_files):
        folder = srv / f"pkg{i % 10}" / f"sub{i % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(512, 40 * 1024)
        (folder / f"module_{i:04d}.py").write_bytes(rng.randbytes(size))
        total += size
    return total


async def provision(session: CloudSession) -> InferenceConfig:
    from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID

    await session.create_resource_group(LOCAL_SUBSCRIPTION_ID, "rg-bench", "eastus")
    params = ParametersDocument.load(session.project.parameters_path)
    async for ev in session.provision(LOCAL_SUBSCRIPTION_ID, "rg-bench", params):
        if isinstance(ev, Failed):
            raise SystemExit(f"provision failed: {ev.message} ({ev.detail})")
    return InferenceConfig.load(session.project.config_path)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


async def run(n_files: int, repeat: int, latency_ms: float = 0.0) -> dict:
    from aitk_tui.local.server import LocalCloud

    with tempfile.TemporaryDirectory(prefix="aitk-bench-") as tmp:
        root = Path(tmp) / "proj"
        total_bytes = make_project(root, n_files)
        cloud = LocalCloud(Path(tmp) / "cloud", op_delay_s=0.01)
        cloud.start()
        try:
            session = CloudSession.for_cloud(Project(root), cloud.endpoints, cloud.credential())
            config = await provision(session)
            key = await session.storage_key(config.SUBSCRIPTION_ID, config.RESOURCE_GROUP_NAME,
                                            config.STORAGE_ACCOUNT_NAME)
            share = session.factory.share(config.STORAGE_ACCOUNT_NAME, config.FILE_SHARE_NAME, key)
            if latency_ms:
                # Every Files request to the share waits this long, like a round trip to Azure.
                cloud.inject("latency", count=10**7, path_contains=f"/{config.FILE_SHARE_NAME}",
                             delay_s=latency_ms / 1000)

            def reset() -> None:
                share.get_file_client(MANIFEST_PATH).delete_file()

            full, unchanged, sequential, deploy_unchanged = [], [], [], []
            for i in range(repeat):
                if i:
                    reset()
                cache = root / ".aitk" / "sync-hashes.json"
                cache.unlink(missing_ok=True)
                full.append(timed(lambda: sync_folder(share, root, workers=8, hash_cache_path=cache)))
                unchanged.append(timed(lambda: sync_folder(share, root, workers=8, hash_cache_path=cache)))

                async def redeploy() -> float:
                    t0 = time.perf_counter()
                    async for ev in session.deploy(config, restart=False, wait=False):
                        if isinstance(ev, Failed):
                            raise SystemExit(f"deploy failed: {ev.message}")
                        if isinstance(ev, Done):
                            assert ev.summary.startswith("uploaded 0 files"), ev.summary
                    return time.perf_counter() - t0

                deploy_unchanged.append(await redeploy())
            for _ in range(repeat):
                reset()
                sequential.append(timed(lambda: sync_folder(share, root, workers=1)))
            await session.close()
        finally:
            cloud.stop()

    med = {k: statistics.median(v) for k, v in
           {"full": full, "unchanged": unchanged, "deploy_unchanged": deploy_unchanged,
            "sequential": sequential}.items()}
    return {
        "files": n_files, "bytes": total_bytes, "repeat": repeat, "latency_ms": latency_ms,
        "full_s": round(med["full"], 4), "unchanged_s": round(med["unchanged"], 4),
        "deploy_unchanged_s": round(med["deploy_unchanged"], 4), "sequential_s": round(med["sequential"], 4),
        "full_over_unchanged": round(med["full"] / med["unchanged"], 1),
        "full_over_deploy_unchanged": round(med["full"] / med["deploy_unchanged"], 1),
        "sequential_over_parallel": round(med["sequential"] / med["full"], 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--latency-ms", type=float, default=0.0,
                    help="added delay per Files request, to mimic the round trip to Azure")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    r = asyncio.run(run(args.files, args.repeat, args.latency_ms))
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"{r['files']} files, {r['bytes'] / 1e6:.1f} MB, median of {r['repeat']} runs (local cloud, HTTPS, "
          f"+{r['latency_ms']:g} ms per Files request)")
    print(f"  full upload (8 workers)        {r['full_s'] * 1000:8.1f} ms")
    print(f"  unchanged redeploy (sync only) {r['unchanged_s'] * 1000:8.1f} ms   ratio {r['full_over_unchanged']}x")
    print(f"  unchanged redeploy (deploy())  {r['deploy_unchanged_s'] * 1000:8.1f} ms   ratio "
          f"{r['full_over_deploy_unchanged']}x")
    print(f"  full upload (1 worker)         {r['sequential_s'] * 1000:8.1f} ms   parallel speed-up "
          f"{r['sequential_over_parallel']}x")
    goal = "met" if r["full_over_unchanged"] >= 50 else "NOT met"
    print(f"goal full/unchanged >= 50x: {goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
