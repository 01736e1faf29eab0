#!/usr/bin/env python3
"""Time adding vectors to a saved HNSW graph: `vecquant add` against hnswlib's own cycle.

hnswlib's cycle is `load_index`, `add_items` (on --threads threads) and `save_index`
followed by an `fsync` of the file (`vecquant add` syncs before it renames, so both
sides end with the data on disk). Each side's time is also given as a percentage of
its own build of the base file (M and ef_construction 200 on both; `vecquant build`
uses every core, hnswlib `--threads`). Every round starts from the same saved graph:
vecquant's file is copied afresh, hnswlib's reloaded.

Installs nothing itself. Set up once, outside the repository:

    python3 -m venv ~/hnsw-venv && ~/hnsw-venv/bin/pip install hnswlib numpy

Usage:

    ~/hnsw-venv/bin/python benches/add_vs_hnswlib.py --base DATA/base.fvecs \
        --add MORE/base.fvecs --vecquant target/release/vecquant [--m 32] [--rounds 3]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

try:
    import hnswlib
    import numpy as np
except ImportError as e:  # pragma: no cover
    sys.stderr.write(f"add_vs_hnswlib.py needs numpy and hnswlib: {e}\n"
                     "  pip install hnswlib numpy   (in a virtualenv outside the repo)\n")
    sys.exit(2)

from vecs_io import read_vecs  # noqa: E402 (after the import check above)


def fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def run(cmd):
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="vectors the graph is built on (.fvecs)")
    ap.add_argument("--add", required=True, help="vectors added to it (.fvecs)")
    ap.add_argument("--vecquant", required=True, help="the vecquant binary")
    ap.add_argument("--m", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="hnswlib's threads")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", default=None, help="where the index files go (default: a temp dir)")
    a = ap.parse_args()
    xb, xa = read_vecs(a.base, np.float32), read_vecs(a.add, np.float32)
    if xb.shape[1] != xa.shape[1]:
        sys.exit(f"dimensions differ: {xb.shape[1]} in {a.base}, {xa.shape[1]} in {a.add}")
    work = a.workdir or tempfile.mkdtemp(prefix="add_vs_hnswlib_")
    hl, hl2 = os.path.join(work, "hnswlib.bin"), os.path.join(work, "hnswlib_added.bin")
    vq, vq2 = os.path.join(work, "vecquant.vq"), os.path.join(work, "vecquant_added.vq")

    idx = hnswlib.Index(space="l2", dim=xb.shape[1])
    idx.init_index(max_elements=len(xb), M=a.m, ef_construction=200, random_seed=100)
    idx.set_num_threads(a.threads)
    t = time.perf_counter()
    idx.add_items(xb)
    hl_build = time.perf_counter() - t
    idx.save_index(hl)
    fsync(hl)
    del idx
    vq_build = run([a.vecquant, "build", "--spec", f"HNSW{a.m}", "--base", a.base,
                    "--ef-construction", "200", "--out", vq])
    print(f"build of {len(xb)} x {xb.shape[1]}: hnswlib {hl_build:.2f} s, vecquant {vq_build:.2f} s")
    ids = np.arange(len(xb), len(xb) + len(xa))
    for r in range(a.rounds):
        t0 = time.perf_counter()
        i2 = hnswlib.Index(space="l2", dim=xb.shape[1])
        i2.load_index(hl, max_elements=len(xb) + len(xa))
        t1 = time.perf_counter()
        i2.set_num_threads(a.threads)
        i2.add_items(xa, ids)
        t2 = time.perf_counter()
        i2.save_index(hl2)
        fsync(hl2)
        t3 = time.perf_counter()
        del i2
        shutil.copyfile(vq, vq2)
        fsync(vq2)
        ours = run([a.vecquant, "add", "--index", vq2, "--vectors", a.add])
        print(f"round {r}: add {len(xa)}: hnswlib load {t1 - t0:.3f} + add_items {t2 - t1:.3f}"
              f" + save/fsync {t3 - t2:.3f} = {t3 - t0:.3f} s ({100 * (t3 - t0) / hl_build:.2f} % of"
              f" its build; add_items alone {100 * (t2 - t1) / hl_build:.2f} %) | vecquant add"
              f" {ours:.3f} s ({100 * ours / vq_build:.2f} % of its build)", flush=True)
    if a.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
