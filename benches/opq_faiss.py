#!/usr/bin/env python3
"""FAISS counterpart of `cargo run --features examples --example opq_compare -- run DATA_DIR`: builds
index_factory(d, SPEC) (default "OPQ16,PQ16"), trains it on train.fvecs, adds
base.fvecs, searches query.fvecs with k = 10 and prints recall@10 against
groundtruth.ivecs and the training time, per training seed and on average.

python benches/opq_faiss.py DATA_DIR [SEEDS] [SPEC] [THREADS] [defaults]

FAISS fixes its OPQ seeds (the random initial rotation is float_randn(…, 1234), the
65,536-point subsample and the k-means initialisations use seed 1234), so a training
seed s here varies all three the way a user can:
- the training rows are permuted with numpy seed s (the subsample FAISS draws from
  them, and the order k-means sees, change);
- the OPQMatrix starts from a random orthogonal matrix drawn with seed s (OPQMatrix
  uses a preset `A` instead of its own random rotation);
- the final IndexPQ's k-means uses cp.seed = 1234 + s.
With the last argument `defaults`, the index is trained exactly as index_factory makes
it (one run; SEEDS is ignored).
"""
import sys
import time

# Through the main comparison script (same folder), which sets OpenBLAS's core type
# before faiss loads (see `_openblas_coretype` there).
from compare_faiss import faiss, np, read_vecs


def recall_at_10(ids, gt):
    return float(np.mean([len(set(ids[i]) & set(gt[i, :10])) / 10 for i in range(len(ids))]))


def build(d, spec, xt, seed):
    index = faiss.index_factory(d, spec)
    if seed is None:
        return index, xt
    sub = faiss.downcast_index(index)
    if isinstance(sub, faiss.IndexPreTransform):
        for i in range(sub.chain.size()):
            vt = faiss.downcast_VectorTransform(sub.chain.at(i))
            if isinstance(vt, faiss.OPQMatrix):
                g = np.random.default_rng(seed).standard_normal((vt.d_out, vt.d_in))
                q, r = np.linalg.qr(g)
                q = q * np.sign(np.diag(r))
                a = np.ascontiguousarray(q, dtype=np.float32).ravel()
                faiss.copy_array_to_vector(a, vt.A)
        sub = faiss.downcast_index(sub.index)
    sub.pq.cp.seed = 1234 + seed
    perm = np.random.default_rng(seed).permutation(len(xt))
    return index, np.ascontiguousarray(xt[perm])


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    d_dir = a[0]
    seeds = int(a[1]) if len(a) > 1 else 3
    spec = a[2] if len(a) > 2 else "OPQ16,PQ16"
    threads = int(a[3]) if len(a) > 3 else 2
    defaults = len(a) > 4 and a[4] == "defaults"
    faiss.omp_set_num_threads(threads)
    xb = read_vecs(d_dir + "/base.fvecs", np.float32)
    xt = read_vecs(d_dir + "/train.fvecs", np.float32)
    xq = read_vecs(d_dir + "/query.fvecs", np.float32)
    gt = read_vecs(d_dir + "/groundtruth.ivecs", np.int32)
    d = xb.shape[1]
    name = d_dir.rstrip("/").split("/")[-1]
    runs = [None] if defaults else list(range(seeds))
    recalls, times = [], []
    for seed in runs:
        index, train = build(d, spec, xt, seed)
        t = time.time()
        index.train(train)
        secs = time.time() - t
        index.add(xb)
        _, ids = index.search(xq, 10)
        r = recall_at_10(ids, gt)
        label = "faiss defaults" if seed is None else f"seed {seed}"
        print(f"{name} faiss {spec} {label}: recall@10 {r:.4f}, training {secs:.1f} s", flush=True)
        recalls.append(r)
        times.append(secs)
    print(f"{name} faiss {spec} over {len(runs)} run(s): recall@10 {np.mean(recalls):.4f}, "
          f"training {np.mean(times):.1f} s ({threads} threads)")


if __name__ == "__main__":
    main()
