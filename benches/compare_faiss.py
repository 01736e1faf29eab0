#!/usr/bin/env python3
"""Run FAISS on the same .fvecs files vecquant uses, and print the same JSON keys.

Installs nothing itself. Set up once, outside the repository:

    python3 -m venv ~/faiss-venv && ~/faiss-venv/bin/pip install faiss-cpu numpy

Usage:

    ~/faiss-venv/bin/python benches/compare_faiss.py --data datasets/cache/gaussian-100000x128-q1000-s42 \
        --specs Flat,SQ8,SQ4,PQ16 [--threads 1] [-k 10] [--nprobe 1,2,4,8] [--ef 16,64]

Each spec is a FAISS index-factory string (`Flat`, `SQ8`, `SQ4`, `PQ16`, `PQ32x4fs`,
`IVF1024,PQ32`, `HNSW32`, ...), or `hnswlib{M}` for hnswlib's HNSW (needs
`pip install hnswlib`; ef_construction 200 unless --ef-construction). `--nprobe` and
`--ef` take comma-separated lists: IVF specs are measured at every nprobe, HNSW ones at
every ef. One JSON object per line:
spec, n, dim, k, recall_at_1, recall_at_10, qps, bytes_per_vector, index_bytes, threads,
nprobe, ef, plus train_secs, add_secs and groundtruth_secs/groundtruth_qps for the exact
search.

With --serve, each FAISS spec's index is kept after its rows are printed: the script
prints {"serving": SPEC} and then times one search per line read from stdin —
{"nprobe": N}, {"ef": N} or {} (no parameter) — answering {"qps": Q} per line, until
an empty line or the end of input; then it goes on to the next spec. `vecquant bench
--compare-faiss` uses this to time the two libraries in alternating rounds (a shared
machine's speed drifts by tens of per cent within seconds).
"""

import argparse
import json
import math
import os
import sys
import time


def _openblas_coretype():
    """faiss-cpu's wheels bundle an OpenBLAS (0.3.15 in faiss-cpu 1.15.1) that does not
    recognise CPUs newer than itself (Sapphire and Emerald Rapids, Zen 4) and falls back
    to a generic kernel. On such a Xeon, FAISS's exact search ran 3.2x slower, and the
    coarse quantizer of every IVF search with it (IVF256,PQ32x4fs on 100k x 128: 1.42x
    the QPS at nprobe 1, 1.25x at 4, 1.13x at 16 with the right kernel). Unless the
    caller chose a core type, name the CPU's vector width, so that FAISS is compared at
    its best."""
    if "OPENBLAS_CORETYPE" in os.environ:
        return
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((l.split(":", 1)[1].split() for l in f if l.startswith("flags")), [])
    except OSError:
        return
    flags = set(flags)
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"} <= flags:
        os.environ["OPENBLAS_CORETYPE"] = "SKYLAKEX"
    elif {"avx2", "fma"} <= flags:
        os.environ["OPENBLAS_CORETYPE"] = "HASWELL"


_openblas_coretype()

try:
    import numpy as np
    import faiss
except ImportError as e:  # pragma: no cover
    sys.stderr.write(f"compare_faiss.py needs numpy and faiss-cpu: {e}\n"
                     "  pip install faiss-cpu numpy   (in a virtualenv outside the repo)\n")
    sys.exit(2)


from vecs_io import read_vecs  # noqa: E402 (after the import check above)


def timed_search(index, xq, k, min_secs=0.2):
    reps, t0 = 0, time.perf_counter()
    D = I = None
    while reps == 0 or (time.perf_counter() - t0 < min_secs and reps < 50):
        D, I = index.search(xq, k)
        reps += 1
    return D, I, xq.shape[0] * reps / (time.perf_counter() - t0)


def recall(I, gt, k):
    n = I.shape[0]
    r1 = float((I[:, 0] == gt[:, 0]).mean())
    kk = min(k, 10)
    hits = sum(len(set(I[i, :kk]) & set(gt[i, :kk])) for i in range(n))
    return r1, hits / (n * kk)


def split_specs(s):
    """Like vecquant's: `;`-separated, or `,`-separated with OPQ/IVF prefixes kept
    together with the spec they prefix."""
    if ";" in s:
        return [t.strip() for t in s.split(";") if t.strip()]
    out, pending = [], []
    for t in (t.strip() for t in s.split(",")):
        if not t:
            continue
        pending.append(t)
        if not t.lower().startswith(("opq", "ivf")):
            out.append(",".join(pending))
            pending = []
    if pending:
        out.append(",".join(pending))
    return out


def set_seed(index, seed):
    """Sets the k-means seed of the product quantizer(s) inside `index`, if any."""
    for obj in (index, getattr(index, "index", None)):
        pq = getattr(obj, "pq", None) if obj is not None else None
        if pq is not None:
            pq.cp.seed = seed
    try:
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.seed = seed
        if hasattr(ivf, "pq"):
            ivf.pq.cp.seed = seed
    except Exception:
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--specs", default="Flat")
    ap.add_argument("--threads", type=int, default=1, help="threads of the searches")
    ap.add_argument("--build-threads", type=int, default=None,
                    help="threads of training and adding (default: --threads)")
    ap.add_argument("--skip-flat", action="store_true",
                    help="skip timing the exact search (IndexFlatL2 over a second copy of "
                         "the base vectors: too much memory for very large sets)")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--nprobe", default="8", help="comma-separated list")
    ap.add_argument("--ef", default="64", help="comma-separated list")
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--k-factor", type=int, default=None,
                    help="for refined specs (`...,RFlat`): re-rank k·k_factor candidates "
                         "(vecquant's --rerank R is k_factor = R / k)")
    ap.add_argument("--serve", action="store_true",
                    help="after each FAISS spec's rows, time searches on request "
                         "(stdin lines {\"nprobe\": N}, {\"ef\": N} or {}) until an "
                         "empty line")
    ap.add_argument("--seed", type=int, default=None,
                    help="seed for the PQ/IVF k-means (faiss default when omitted)")
    args = ap.parse_args()
    build_threads = args.build_threads or args.threads
    faiss.omp_set_num_threads(args.threads)

    xb = read_vecs(os.path.join(args.data, "base.fvecs"), np.float32)
    xq = read_vecs(os.path.join(args.data, "query.fvecs"), np.float32)
    tpath = os.path.join(args.data, "train.fvecs")
    xt = read_vecs(tpath, np.float32) if os.path.exists(tpath) else xb
    gt = read_vecs(os.path.join(args.data, "groundtruth.ivecs"), np.int32)
    n, d = xb.shape

    # Exact ground truth time (IndexFlatL2, the reference for vecquant's GEMM path).
    gt_secs = float("nan")
    if not args.skip_flat:
        flat = faiss.IndexFlatL2(d)
        flat.add(xb)
        t0 = time.perf_counter()
        flat.search(xq, 100)
        gt_secs = time.perf_counter() - t0
        del flat

    nprobes = [int(v) for v in args.nprobe.split(",") if v.strip()]
    efs = [int(v) for v in args.ef.split(",") if v.strip()]

    def emit(spec, r1, r10, qps, code_size, index_bytes, train_secs, add_secs, nprobe=None, ef=None):
        print(json.dumps({
            "spec": spec, "n": int(n), "dim": int(d), "k": args.k,
            "recall_at_1": r1, "recall_at_10": r10, "qps": qps,
            "bytes_per_vector": float(code_size), "index_bytes": int(index_bytes),
            "threads": args.threads, "nprobe": nprobe, "ef": ef,
            "train_secs": train_secs, "add_secs": add_secs,
            # (null, not NaN — which is not JSON — when exact search was not timed)
            "groundtruth_secs": None if math.isnan(gt_secs) else gt_secs,
            "groundtruth_qps": None if math.isnan(gt_secs) else xq.shape[0] / gt_secs,
        }), flush=True)

    for spec in split_specs(args.specs):
        if spec.lower().startswith("hnswlib"):
            run_hnswlib(spec, args, xb, xq, gt, efs, emit, build_threads)
            continue
        index = faiss.index_factory(d, spec)
        if args.seed is not None:
            set_seed(index, args.seed)
        faiss.omp_set_num_threads(build_threads)
        t0 = time.perf_counter()
        if not index.is_trained:
            index.train(xt)
        train_secs = time.perf_counter() - t0
        t0 = time.perf_counter()
        index.add(xb)
        add_secs = time.perf_counter() - t0
        faiss.omp_set_num_threads(args.threads)
        code_size = getattr(index, "code_size", None)
        if not code_size:
            try:
                code_size = index.sa_code_size()
            except RuntimeError:  # graph indexes have no standalone codec
                code_size = d * 4
        blob = faiss.serialize_index(index)
        lower = spec.lower()
        if lower.startswith("ivf") or ",ivf" in lower:
            sweep = [("nprobe", v) for v in nprobes]
        elif lower.startswith("hnsw"):
            sweep = [("efSearch", v) for v in efs]
        else:
            sweep = [(None, None)]
        if args.k_factor is not None:
            try:
                faiss.ParameterSpace().set_index_parameter(index, "k_factor_rf", args.k_factor)
            except Exception:
                pass
        for name, value in sweep:
            if name is not None:
                faiss.ParameterSpace().set_index_parameter(index, name, value)
            _, I, qps = timed_search(index, xq, args.k)
            r1, r10 = recall(I, gt, args.k)
            emit(spec, r1, r10, qps, code_size, blob.size, train_secs, add_secs,
                 nprobe=value if name == "nprobe" else None,
                 ef=value if name == "efSearch" else None)
        if args.serve:
            serve(spec, index, xq, args.k)


def serve(spec, index, xq, k):
    """Times searches of `index` on request (see the module's help) until an empty
    line or the end of input."""
    print(json.dumps({"serving": spec}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            return
        req = json.loads(line)
        if "nprobe" in req:
            faiss.ParameterSpace().set_index_parameter(index, "nprobe", int(req["nprobe"]))
        elif "ef" in req:
            faiss.ParameterSpace().set_index_parameter(index, "efSearch", int(req["ef"]))
        _, _, qps = timed_search(index, xq, k)
        print(json.dumps({"qps": qps}), flush=True)


def run_hnswlib(spec, args, xb, xq, gt, efs, emit, build_threads):
    try:
        import hnswlib
    except ImportError as e:
        sys.stderr.write(f"{spec}: needs hnswlib ({e}); pip install hnswlib\n")
        return
    m = int(spec[len("hnswlib"):] or 32)
    n, d = xb.shape
    index = hnswlib.Index(space="l2", dim=d)
    t0 = time.perf_counter()
    seed = 100 if args.seed is None else args.seed
    index.init_index(max_elements=n, M=m, ef_construction=args.ef_construction, random_seed=seed)
    index.set_num_threads(build_threads)
    index.add_items(xb, np.arange(n), num_threads=build_threads)
    add_secs = time.perf_counter() - t0
    # Level-0 links (2M) plus the vector, as hnswlib stores them.
    code_size = d * 4 + 2 * m * 4
    for ef in efs:
        index.set_ef(max(ef, args.k))
        reps, t0 = 0, time.perf_counter()
        while reps == 0 or (time.perf_counter() - t0 < 0.2 and reps < 50):
            labels, _ = index.knn_query(xq, k=args.k, num_threads=args.threads)
            reps += 1
        qps = xq.shape[0] * reps / (time.perf_counter() - t0)
        r1, r10 = recall(labels.astype(np.int64), gt, args.k)
        emit(spec, r1, r10, qps, code_size, n * code_size, 0.0, add_secs, ef=ef)


if __name__ == "__main__":
    main()
