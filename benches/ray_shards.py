"""Sharded build and search on a local Ray cluster against the single-process CLI
(issue 19, item 3): build wall time, QPS and recall@10 for 1, 2 and 4 shards.

Every build trains on the same training file (the one `vecquant gen` writes), so the
sharded and single-process indexes share one quantizer. Search sends all queries as one
batch (the shards answer it in parallel, each with rayon threads), k = 10.

    vecquant gen mixture --n 1000000 --out mix1m
    python benches/ray_shards.py --data mix1m --vecquant target/release/vecquant \\
        --specs IVF1024,PQ32x4fs SQ8 --shards 1 2 4 --nprobe 16 --work /tmp/shards

Prints one JSON object per row and a Markdown table at the end.
"""

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np

import vecquant
from vecquant import distributed as vd


def recall_at(ids: np.ndarray, gt: np.ndarray, k: int) -> float:
    hits = sum(len(set(a[:k]) & set(b[:k])) for a, b in zip(ids, gt))
    return hits / (len(ids) * k)


def dir_bytes(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(path, f))
        for f in os.listdir(path)
        if f.startswith("shard-")
    )


def cli_row(exe, data, spec, params, work, k):
    out = os.path.join(work, "single.vq")
    t = time.perf_counter()
    subprocess.run(
        [exe, "build", "--spec", spec, "--base", f"{data}/base.fvecs",
         "--train", f"{data}/train.fvecs", "--out", out],
        check=True, stdout=subprocess.DEVNULL,
    )
    build = time.perf_counter() - t
    cmd = [exe, "search", "--index", out, "--queries", f"{data}/query.fvecs",
           "--gt", f"{data}/groundtruth.ivecs", "--k", str(k), "--json"]
    if "nprobe" in params:
        cmd += ["--nprobe", str(params["nprobe"])]
    res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    size = os.path.getsize(out)
    os.remove(out)
    return {"spec": spec, "mode": "CLI, one process", "shards": 1, "build_s": build,
            "qps": res["qps"], "recall": res["recall_at_10"], "bytes": size}


def ray_row(data, spec, shards, params, work, k, query, gt, repeats):
    out = os.path.join(work, f"ray-{shards}")
    shutil.rmtree(out, ignore_errors=True)
    train = vecquant.read_fvecs(f"{data}/train.fvecs")
    t = time.perf_counter()
    manifest = vd.build_sharded(f"{data}/base.fvecs", spec, out, shards, train=train)
    build = time.perf_counter() - t
    index = vd.ShardedIndex(manifest)
    try:
        index.search(query[:50], k, **params)  # actors warm, files mapped
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            _, ids = index.search(query, k, **params)
            best = min(best, time.perf_counter() - t)
    finally:
        index.close()
    size = dir_bytes(out)
    shutil.rmtree(out, ignore_errors=True)
    return {"spec": spec, "mode": "Ray", "shards": shards, "build_s": build,
            "qps": len(query) / best, "recall": recall_at(ids, gt, k), "bytes": size}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="directory written by `vecquant gen`")
    ap.add_argument("--vecquant", required=True, help="the vecquant binary (release)")
    ap.add_argument("--specs", nargs="+", default=["IVF1024,PQ32x4fs", "SQ8"])
    ap.add_argument("--shards", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument("--nprobe", type=int, default=16)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", default=None, help="scratch directory (default: a temporary one)")
    args = ap.parse_args()

    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    work = args.work or tempfile.mkdtemp(prefix="vq-shards-")
    os.makedirs(work, exist_ok=True)
    query = vecquant.read_fvecs(f"{args.data}/query.fvecs")
    gt = vecquant.read_ivecs(f"{args.data}/groundtruth.ivecs")
    rows = []
    for spec in args.specs:
        params = {"nprobe": args.nprobe} if "IVF" in spec else {}
        row = cli_row(args.vecquant, args.data, spec, params, work, args.k)
        print(json.dumps(row), flush=True)
        rows.append(row)
        for s in args.shards:
            row = ray_row(args.data, spec, s, params, work, args.k, query, gt, args.repeats)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print()
    print("| spec | how | shards | build s | QPS | recall@10 | bytes on disk | QPS vs CLI | build vs CLI |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        base = next(b for b in rows if b["spec"] == r["spec"] and b["mode"].startswith("CLI"))
        print(f"| `{r['spec']}` | {r['mode']} | {r['shards']} | {r['build_s']:.1f} | {r['qps']:.0f} "
              f"| {r['recall']:.4f} | {r['bytes'] / 1e6:.1f} MB | {r['qps'] / base['qps']:.2f}× "
              f"| {r['build_s'] / base['build_s']:.2f}× |")


if __name__ == "__main__":
    main()
