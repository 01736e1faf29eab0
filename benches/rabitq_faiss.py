#!/usr/bin/env python3
"""Recall@10 of FAISS's RaBitQ indexes on the .fvecs files `vecquant gen` writes, to put
next to `vecquant bench --data DIR --specs 'RaBitQ;RaBitQ4;IVF1024,RaBitQ' --rerank 0`.

Usage (faiss-cpu and numpy in a virtualenv outside the repository):

    /work/faiss-venv/bin/python benches/rabitq_faiss.py --data DIR \
        [--specs RaBitQ,RaBitQ4,IVF1024,RaBitQ] [--qb 4] [--nprobe 32] [--threads 1]

`--specs` is a `;`-separated list of FAISS factory strings (`RaBitQ`, `RaBitQ{b}`,
`IVF{n},RaBitQ[{b}]`); `--qb` is a comma-separated list of FAISS's query bits
(`IndexRaBitQ::qb`, default 4; 0 = float query). One JSON object per line: spec, qb,
nprobe, recall_at_10, bytes_per_vector (`code_size`), qps.
"""

import argparse
import json
import os
import sys
import time

# The .fvecs/.ivecs reader and the recall of the main comparison script (same folder);
# it exits with a hint when numpy or faiss-cpu is missing.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_faiss import faiss, np, read_vecs, recall  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--specs", default="RaBitQ;RaBitQ4;IVF1024,RaBitQ")
    ap.add_argument("--qb", default="4")
    ap.add_argument("--nprobe", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-k", type=int, default=10)
    args = ap.parse_args()
    faiss.omp_set_num_threads(args.threads)
    xb = read_vecs(os.path.join(args.data, "base.fvecs"), np.float32)
    xq = read_vecs(os.path.join(args.data, "query.fvecs"), np.float32)
    gt = read_vecs(os.path.join(args.data, "groundtruth.ivecs"), np.int32)
    tpath = os.path.join(args.data, "train.fvecs")
    xt = read_vecs(tpath, np.float32) if os.path.exists(tpath) else xb
    d = xb.shape[1]
    for spec in [s.strip() for s in args.specs.split(";") if s.strip()]:
        index = faiss.index_factory(d, spec, faiss.METRIC_L2)
        index.train(xt)
        index.add(xb)
        ivf = None
        try:
            ivf = faiss.extract_index_ivf(index)
            ivf.nprobe = args.nprobe
        except RuntimeError:
            ivf = None
        for qb in [int(q) for q in args.qb.split(",")]:
            index.qb = qb
            t0 = time.perf_counter()
            _, I = index.search(xq, args.k)
            secs = time.perf_counter() - t0
            print(json.dumps({
                "spec": spec, "qb": qb,
                "nprobe": args.nprobe if ivf is not None else None,
                "recall_at_10": round(recall(I, gt, args.k)[1], 4),
                "bytes_per_vector": index.code_size if ivf is None else ivf.code_size,
                "qps": round(xq.shape[0] / secs, 1),
            }), flush=True)


if __name__ == "__main__":
    main()
