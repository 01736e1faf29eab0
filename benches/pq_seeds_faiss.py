#!/usr/bin/env python3
"""FAISS counterpart of `cargo run --release --features examples --example pq_seeds`: trains IndexPQ /
IndexPQFastScan's product quantizer with several `cp.seed` values and prints the
recall@10 of the exact ADC ranking and the reconstruction MSE, per seed and on average.

python benches/pq_seeds_faiss.py DATA_DIR [M] [NBITS] [SEEDS] [NREDO]
"""
import sys

# Through the main comparison script (same folder), which sets OpenBLAS's core type
# before faiss loads (see `_openblas_coretype` there).
from compare_faiss import faiss, np, read_vecs


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    d = a[0]
    m, nbits, seeds, nredo = (int(a[i]) if len(a) > i else v for i, v in ((1, 32), (2, 4), (3, 8), (4, 1)))
    xb = read_vecs(d + "/base.fvecs", np.float32)
    xt = read_vecs(d + "/train.fvecs", np.float32)
    xq = read_vecs(d + "/query.fvecs", np.float32)
    gt = read_vecs(d + "/groundtruth.ivecs", np.int32)
    recalls, mses = [], []
    for seed in range(seeds):
        pq = faiss.ProductQuantizer(xb.shape[1], m, nbits)
        pq.cp.seed = 1234 + seed
        pq.cp.nredo = nredo
        pq.train(xt)
        rec = pq.decode(pq.compute_codes(xb))
        flat = faiss.IndexFlatL2(xb.shape[1])
        flat.add(rec)
        _, ids = flat.search(xq, 10)
        r = np.mean([len(set(ids[i]) & set(gt[i, :10])) / 10 for i in range(len(xq))])
        mse = float(((rec - xb) ** 2).sum(1).mean())
        print(f"seed {seed}: recall@10 {r:.4f}, MSE {mse:.3f}", flush=True)
        recalls.append(r)
        mses.append(mse)
    print(f"faiss PQ{m} ({nbits}-bit, nredo {nredo}) over {seeds} seeds: "
          f"recall@10 {np.mean(recalls):.4f} ± {np.std(recalls):.4f}, MSE {np.mean(mses):.3f}")


if __name__ == "__main__":
    main()
