"""The numpy API (issue 19, item 1): index_factory/train/add/search/delete/save,
read_index, errors, vector files, and agreement with the `vecquant` CLI."""

import json
import pickle
import subprocess

import numpy as np
import pytest

import vecquant


def brute_force(base, query, k):
    d = ((query[:, None, :].astype(np.float64) - base[None, :, :]) ** 2).sum(-1)
    order = np.lexsort((np.broadcast_to(np.arange(len(base)), d.shape), d), axis=1)
    return order[:, :k]


# ---------------------------------------------------------------- API


def test_item1_flat_search_matches_brute_force(data):
    base, query = data
    index = vecquant.index_factory(32, "Flat")
    assert index.is_trained and index.ntotal == 0
    index.add(base)
    D, I = index.search(query, 10)
    assert D.dtype == np.float32 and I.dtype == np.int64
    assert D.shape == I.shape == (100, 10)
    np.testing.assert_array_equal(I, brute_force(base, query, 10))
    exact = ((query[:, None, :] - base[I]) ** 2).sum(-1)
    np.testing.assert_allclose(D, exact, rtol=1e-4, atol=1e-4)
    assert (np.diff(D, axis=1) >= 0).all()


def test_item1_properties_and_spec_kinds(data):
    base, query = data
    for spec, metric in [("SQ8", "l2"), ("PQ8", "ip"), ("IVF16,SQ8", "cosine"), ("HNSW16", "l2"),
                         ("IVF16,PQ8x4fs", "l2")]:
        index = vecquant.index_factory(32, spec, metric)
        assert (index.d, index.spec, index.metric) == (32, spec, metric)
        if not index.is_trained:
            index.train(base)
        assert index.is_trained
        index.add(base)
        assert index.ntotal == len(index) == 2000
        assert index.bytes_per_vector > 0
        D, I = index.search(query[:3], 5)
        assert I.shape == (3, 5) and (I >= 0).all()
    sq8 = vecquant.index_factory(32, "SQ8")
    assert sq8.bytes_per_vector == 32


def test_item1_padding_when_fewer_than_k(data):
    base, query = data
    index = vecquant.index_factory(32, "Flat")
    index.add(base[:3], ids=[7, 8, 9])
    D, I = index.search(query[:2], 5)
    assert sorted(I[0, :3]) == [7, 8, 9]
    assert (I[:, 3:] == -1).all() and np.isinf(D[:, 3:]).all()


def test_item1_ids_delete_and_params(data):
    base, query = data
    index = vecquant.index_factory(32, "IVF16,SQ8", keep_raw=True)
    index.train(base)
    ids = np.arange(1000, 3000, dtype=np.int64)
    index.add(base, ids=ids)
    D, I = index.search(base[:5], 1, nprobe=16)
    np.testing.assert_array_equal(I[:, 0], ids[:5])
    assert index.delete(np.array([1000, 1001, 5])) == 2
    assert index.ntotal == 1998 and index.deleted == 2
    _, I = index.search(base[:2], 3, nprobe=16, rerank=20)
    assert 1000 not in I and 1001 not in I
    # A parameter the kind does not read is refused, as by the CLI.
    with pytest.raises(ValueError, match="nprobe"):
        vecquant.index_factory(32, "Flat").search(query, 1, nprobe=4)


def test_issue18_adaptive_rerank(data):
    """Error-bound re-ranking from Python: RaBitQ4 with a pool of 100 returns the
    brute-force neighbours (recall >= 0.99) like a fixed re-rank; kinds without error
    bounds refuse it with the library's message."""
    base, query = data
    index = vecquant.index_factory(32, "RaBitQ4", keep_raw=True)
    index.train(base)
    index.add(base)
    truth = brute_force(base, query, 10)
    _, fixed = index.search(query, 10, rerank=100)
    _, adaptive = index.search(query, 10, rerank=100, adaptive_rerank=True)
    recall = lambda I: np.mean([len(set(a) & set(t)) / 10 for a, t in zip(I, truth)])
    assert recall(fixed) >= 0.99 and recall(adaptive) >= 0.99
    sq = vecquant.index_factory(32, "SQ8", keep_raw=True)
    sq.train(base)
    sq.add(base)
    with pytest.raises(ValueError, match="error bounds"):
        sq.search(query, 10, rerank=100, adaptive_rerank=True)


def test_issue20_hnsw_build_options(data):
    """``ef_construction`` and ``hnsw_builder`` reach the graph build (as the CLI's
    ``--ef-construction`` / ``--hnsw-builder``); they are errors for other specs."""
    base, query = data
    truth = brute_force(base, query, 10)
    for builder in ("native", "hnsw_rs"):
        index = vecquant.index_factory(32, "HNSW16", ef_construction=80, hnsw_builder=builder)
        index.add(base)
        _, I = index.search(query, 10, ef=64)
        hits = sum(len(set(I[i]) & set(truth[i])) for i in range(len(query)))
        assert hits / truth.size >= 0.9, (builder, hits / truth.size)
    # A narrower build beam gives a different (native, seeded) graph.
    wide = vecquant.index_factory(32, "HNSW16", ef_construction=200)
    narrow = vecquant.index_factory(32, "HNSW16", ef_construction=4)
    for index in (wide, narrow):
        index.add(base)
    _, a = wide.search(query, 10, ef=16)
    _, b = narrow.search(query, 10, ef=16)
    assert not np.array_equal(a, b)
    with pytest.raises(ValueError, match="applies to HNSW specs"):
        vecquant.index_factory(32, "SQ8", ef_construction=100)
    with pytest.raises(ValueError, match="applies to HNSW specs"):
        vecquant.index_factory(32, "IVF16,Flat", hnsw_builder="native")
    with pytest.raises(ValueError, match="unknown HNSW builder `faiss`"):
        vecquant.index_factory(32, "HNSW16", hnsw_builder="faiss")
    with pytest.raises(ValueError, match="ef_construction"):
        vecquant.index_factory(32, "HNSW16", ef_construction=0)


def test_item1_no_copy_and_conversions(data):
    base, query = data
    index = vecquant.index_factory(32, "Flat")
    index.add(base.astype(np.float64))  # converted once
    index2 = vecquant.index_factory(32, "Flat")
    index2.add(np.asfortranarray(base))
    a = index.search(query, 4)
    b = index2.search(np.ascontiguousarray(query[:, :]), 4)
    np.testing.assert_array_equal(a[1], b[1])
    # A strided view works too (converted once).
    wide = np.repeat(query, 2, axis=0)[::2]
    np.testing.assert_array_equal(index.search(wide, 4)[1], a[1])


def test_item1_save_read_index_serialize(tmp_path, data):
    base, query = data
    index = vecquant.index_factory(32, "SQ8")
    index.train(base)
    index.add(base)
    path = tmp_path / "sq8.vq"
    index.save(path)
    again = vecquant.read_index(str(path))
    np.testing.assert_array_equal(again.search(query, 10)[1], index.search(query, 10)[1])
    back = vecquant.deserialize_index(index.serialize())
    np.testing.assert_array_equal(back.search(query, 10)[0], index.search(query, 10)[0])
    assert (again.spec, again.ntotal, again.d) == ("SQ8", 2000, 32)


def test_item1_reconstruct(data):
    base, _ = data
    sq = vecquant.index_factory(32, "SQ8")
    sq.train(base)
    rec = sq.reconstruct(base[:10])
    assert rec.shape == (10, 32) and rec.dtype == np.float32
    err = np.abs(rec - base[:10]).max()
    assert 0 < err < 0.1
    flat = vecquant.index_factory(32, "Flat")
    np.testing.assert_array_equal(flat.reconstruct(base[:3]), base[:3])


def test_item1_reconstruct_stored_vectors_by_id(data, tmp_path):
    base, _ = data
    # Exact kinds give the added vectors back, by id, in the order asked.
    flat = vecquant.index_factory(32, "Flat")
    flat.add(base[:50], ids=np.arange(100, 150))
    np.testing.assert_array_equal(flat.reconstruct_batch([149, 100, 149]), base[[49, 0, 49]])
    np.testing.assert_array_equal(flat.reconstruct(120), base[20])
    # Quantized kinds give what their stored codes decode to: the same as encoding the
    # same rows afresh, from every layout (fast-scan blocks, IVF lists, graph nodes).
    for spec in ["SQ8", "PQ16x4fs", "IVF16,PQ8", "RaBitQfs", "HNSW16,SQ8"]:
        index = vecquant.index_factory(32, spec)
        index.train(base)
        index.add(base)
        want = index.reconstruct(base[:300])
        np.testing.assert_allclose(index.reconstruct_n(0, 300), want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(index.reconstruct_n()[:300], want, rtol=1e-5, atol=1e-5)
        path = tmp_path / "r.vq"
        index.save(path)
        again = vecquant.read_index(path)
        np.testing.assert_allclose(again.reconstruct_batch(np.array([299, 7])), want[[299, 7]],
                                   rtol=1e-5, atol=1e-5)
        assert again.reconstruct(5).shape == (32,)
    # Ids not held raise ValueError naming the id; a deleted one says so.
    with pytest.raises(ValueError, match=r"id 7 \(position 1"):
        flat.reconstruct_batch([100, 7])
    flat.delete([101])
    with pytest.raises(vecquant.InvalidInputError, match="was deleted"):
        flat.reconstruct(101)
    with pytest.raises(ValueError, match="negative"):
        flat.reconstruct(-1)


def test_item1_vector_files_round_trip(tmp_path, data):
    base, _ = data
    p = tmp_path / "x.fvecs"
    vecquant.write_fvecs(p, base)
    np.testing.assert_array_equal(vecquant.read_fvecs(p), base)
    # .ivecs: 4-byte dim, then int32 values per row.
    rows = np.array([[1, 2, 3], [4, 5, -1]], dtype=np.int32)
    raw = np.hstack([np.full((2, 1), 3, dtype=np.int32), rows])
    (tmp_path / "g.ivecs").write_bytes(raw.tobytes())
    got = vecquant.read_ivecs(tmp_path / "g.ivecs")
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, rows)


def test_item1_threads_and_gil_released(data):
    import threading

    base, query = data
    index = vecquant.index_factory(32, "Flat")
    index.add(base)
    vecquant.set_num_threads(1)
    assert vecquant.get_num_threads() == 1
    want = index.search(query, 5)[1]
    out = [None] * 4

    def run(i):
        out[i] = index.search(query, 5)[1]

    ts = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    vecquant.set_num_threads(0)
    for o in out:
        np.testing.assert_array_equal(o, want)
    with pytest.raises(ValueError, match="threads"):
        vecquant.set_num_threads(100_000)


def test_item1_quantize_model(tmp_path):
    w = np.random.default_rng(1).standard_normal((64, 128)).astype(np.float32)
    np.save(tmp_path / "w.npy", w)
    rep = vecquant.quantize_model(tmp_path / "w.npy", "absmax", tmp_path / "q.vq", bits=4)
    assert isinstance(rep, dict)
    assert rep["total"]["quantized"] == 1
    assert 4 <= rep["total"]["bits_per_weight"] < 5
    assert (tmp_path / "q.vq").stat().st_size > 0
    with pytest.raises(ValueError, match="bits"):
        vecquant.quantize_model(tmp_path / "w.npy", "f16", tmp_path / "q2.vq", bits=4)
    with pytest.raises(ValueError, match="colour"):
        vecquant.quantize_model(tmp_path / "w.npy", "absmax", tmp_path / "q3.vq", colour=1)


# ---------------------------------------------------------------- errors


def test_item1_error_classes():
    assert issubclass(vecquant.InvalidInputError, ValueError)
    assert issubclass(vecquant.InvalidInputError, vecquant.VecquantError)
    assert issubclass(vecquant.FileError, OSError)
    assert issubclass(vecquant.FileError, vecquant.VecquantError)


def test_item1_bad_input_raises_value_error_with_library_messages(data):
    base, query = data
    index = vecquant.index_factory(32, "Flat")
    index.add(base)
    bad = query[:4].copy()
    bad[2, 5] = np.nan
    with pytest.raises(vecquant.InvalidInputError) as e:
        index.search(bad, 3)
    assert "non-finite value NaN at row 2, column 5" in str(e.value)
    with pytest.raises(ValueError, match="dimension mismatch in search: expected 32, got 16"):
        index.search(query[:, :16], 3)
    with pytest.raises(ValueError, match="2-D"):
        index.search(query[0], 3)
    with pytest.raises(ValueError, match="`k`"):
        index.search(query, 0)
    with pytest.raises(ValueError, match="already in the index"):
        index.add(base[:1], ids=[0])
    with pytest.raises(ValueError, match="cannot parse index spec `SQ9x`"):
        vecquant.index_factory(32, "SQ9x")
    with pytest.raises(ValueError, match="unknown metric"):
        vecquant.index_factory(32, "Flat", "manhattan")
    with pytest.raises(ValueError, match="ids"):
        index.add(base[:2], ids=[-1, 5])
    inf = base[:2].copy()
    inf[1, 0] = np.inf
    with pytest.raises(vecquant.VecquantError, match="row 1"):
        index.add(inf)
    empty = vecquant.index_factory(32, "Flat")
    with pytest.raises(ValueError, match="empty"):
        empty.search(query, 1)
    untrained = vecquant.index_factory(32, "SQ8")
    with pytest.raises(ValueError, match="trained"):
        untrained.add(base)


def test_search_whose_answer_arrays_cannot_fit_in_memory_raises():
    # k distances (float32) and ids (int64) per query: more queries than this machine's
    # memory holds at k = 2**20 raise a ValueError naming the way out, instead of
    # killing the interpreter on an allocation.
    try:
        with open("/proc/meminfo") as f:
            kb = next(int(l.split()[1]) for l in f if l.startswith("MemTotal:"))
    except (OSError, StopIteration):
        pytest.skip("the machine's memory is unknown")
    k = 1 << 20
    nq = kb * 1024 // (12 * k) + 1
    index = vecquant.index_factory(1, "Flat")
    index.add(np.arange(100, dtype=np.float32).reshape(-1, 1))
    with pytest.raises(ValueError, match=f"{nq} queries × {k} neighbours.*smaller batches"):
        index.search(np.zeros((nq, 1), dtype=np.float32), k)


def test_item1_file_problems_raise_os_error(tmp_path):
    with pytest.raises(vecquant.FileError) as e:
        vecquant.read_index(tmp_path / "missing.vq")
    assert isinstance(e.value, OSError) and "missing.vq" in str(e.value)
    junk = tmp_path / "junk.vq"
    junk.write_bytes(b"not an index at all" * 10)
    with pytest.raises(OSError, match="junk.vq"):
        vecquant.read_index(junk)
    with pytest.raises(OSError, match="missing.fvecs"):
        vecquant.read_fvecs(tmp_path / "missing.fvecs")
    index = vecquant.index_factory(4, "Flat")
    index.add(np.eye(4, dtype=np.float32))
    with pytest.raises(vecquant.FileError, match="is a directory"):
        index.save(tmp_path)


def test_item1_help_is_useful():
    doc = vecquant.Index.search.__doc__
    assert "nprobe" in doc and "(nq, k)" in doc and "-1" in doc
    assert "spec" in vecquant.index_factory.__doc__


# ---------------------------------------------------------------- the CLI


def test_item1_sq8_ids_equal_cli_search_and_files_cross_read(tmp_path, cli):
    rng = np.random.default_rng(5)
    base = rng.standard_normal((3000, 128), dtype=np.float32)
    query = rng.standard_normal((200, 128), dtype=np.float32)
    vecquant.write_fvecs(tmp_path / "base.fvecs", base)
    vecquant.write_fvecs(tmp_path / "query.fvecs", query)
    # The CLI builds and searches; Python builds from the same numpy data.
    subprocess.run([cli, "build", "--spec", "SQ8", "--base", tmp_path / "base.fvecs",
                    "--out", tmp_path / "cli.vq"], check=True, capture_output=True)
    subprocess.run([cli, "search", "--index", tmp_path / "cli.vq", "--queries",
                    tmp_path / "query.fvecs", "-k", "10", "--out", tmp_path / "ids.ivecs"],
                   check=True, capture_output=True)
    cli_ids = vecquant.read_ivecs(tmp_path / "ids.ivecs")
    index = vecquant.index_factory(128, "SQ8")
    index.train(base)
    index.add(base)
    _, I = index.search(query, 10)
    np.testing.assert_array_equal(I, cli_ids)
    # The CLI's file, read from Python.
    np.testing.assert_array_equal(vecquant.read_index(tmp_path / "cli.vq").search(query, 10)[1], cli_ids)
    # Python's file, searched by the CLI.
    index.save(tmp_path / "py.vq")
    subprocess.run([cli, "search", "--index", tmp_path / "py.vq", "--queries",
                    tmp_path / "query.fvecs", "-k", "10", "--out", tmp_path / "ids2.ivecs"],
                   check=True, capture_output=True)
    np.testing.assert_array_equal(vecquant.read_ivecs(tmp_path / "ids2.ivecs"), I)
