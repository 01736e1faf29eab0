"""Sharded vecquant indexes on Ray: build once-trained shards in parallel, serve them from
one actor per shard replica, fan searches out and merge the per-shard top-k.

Ray is the engine (tasks, actors, object store, restarts); vecquant is the index inside
each task and actor. Install with ``pip install "vecquant[ray]"``.

>>> import ray, vecquant.distributed as vd
>>> ray.init()
>>> manifest = vd.build_sharded(x, "SQ8", "/shared/idx", num_shards=4)
>>> index = vd.ShardedIndex(manifest)
>>> D, I = index.search(q, 10)

Every shard is built from the same trained (empty) index, so the shards share one
quantizer (and, for IVF, one coarse quantizer): the merged results equal those of a
single index over all vectors — exactly for Flat/SQ/PQ, and for IVF at the same nprobe.
``out_dir`` must be visible to every node (a shared or local filesystem).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import FileError, InvalidInputError, VecquantError, deserialize_index, index_factory
from . import read_index as _read_index

#: How long a retry waits for a restarting shard actor when no ``timeout`` is set.
RESTART_WAIT_SECS = 120.0

#: The manifest's ``format`` and ``version`` fields.
MANIFEST_FORMAT = "vecquant-sharded"
MANIFEST_VERSION = 1

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "ShardedIndex",
    "build_sharded",
    "read_manifest",
]


def _ray():
    try:
        import ray
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            'vecquant.distributed needs Ray: pip install "vecquant[ray]"'
        ) from e
    if not ray.is_initialized():
        ray.init()
    return ray


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _write_json_atomic(path: str, obj: Any) -> None:
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dfd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# ---------------------------------------------------------------- sources


class _Rows:
    """Row ranges of a numpy array or of vector files, read where they are used."""

    def __init__(self, source: Any):
        self.paths: List[str] = []
        self.array: Optional[np.ndarray] = None
        if isinstance(source, (str, os.PathLike)):
            source = [source]
        if isinstance(source, np.ndarray):
            if source.ndim != 2:
                raise InvalidInputError(
                    f"source must be a 2-D array (n, d); got shape {source.shape}"
                )
            self.array = source
            self.counts = [source.shape[0]]
            self.dim = source.shape[1]
        elif isinstance(source, (list, tuple)) and all(
            isinstance(p, (str, os.PathLike)) for p in source
        ):
            self.paths = [os.fspath(p) for p in source]
            shapes = [_open_file(p).shape for p in self.paths]
            dims = {s[1] for s in shapes}
            if len(dims) != 1:
                raise InvalidInputError(
                    f"source files have different dimensions: "
                    + ", ".join(f"{p}: {s[1]}" for p, s in zip(self.paths, shapes))
                )
            self.counts = [s[0] for s in shapes]
            self.dim = dims.pop()
        else:
            raise InvalidInputError(
                "source must be a numpy array, a .fvecs/.npy path (or a list of them), "
                f"or a Ray Dataset; got {type(source).__name__}"
            )
        self.n = int(sum(self.counts))

    def take(self, lo: int, hi: int) -> np.ndarray:
        """Rows lo..hi as a C-contiguous float32 array (only those rows are read)."""
        if self.array is not None:
            return np.ascontiguousarray(self.array[lo:hi], dtype=np.float32)
        parts, start = [], 0
        for p, c in zip(self.paths, self.counts):
            a, b = max(lo, start), min(hi, start + c)
            if a < b:
                parts.append(_open_file(p)[a - start : b - start])
            start += c
        if not parts:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)

    def sample(self, size: int, seed: int) -> np.ndarray:
        if size >= self.n:
            return self.take(0, self.n)
        rows = np.sort(np.random.default_rng(seed).choice(self.n, size, replace=False))
        if self.array is not None:
            return np.ascontiguousarray(self.array[rows], dtype=np.float32)
        out, start = [], 0
        for p, c in zip(self.paths, self.counts):
            sel = rows[(rows >= start) & (rows < start + c)] - start
            if len(sel):
                out.append(_open_file(p)[sel])
            start += c
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


def _open_file(path: str) -> np.ndarray:
    """A read-only (n, d) view of a .fvecs or .npy file, memory-mapped."""
    if path.endswith(".npy"):
        a = np.load(path, mmap_mode="r")
        if a.ndim != 2:
            raise FileError(f"{path}: expected a 2-D array, got shape {a.shape}")
        return a
    if path.endswith(".fvecs"):
        raw = np.memmap(path, dtype=np.int32, mode="r")
        if raw.size == 0:
            raise FileError(f"{path}: empty file")
        d = int(raw[0])
        if d <= 0 or raw.size % (d + 1):
            raise FileError(f"{path}: not a whole number of records of dimension {d}")
        return raw.reshape(-1, d + 1)[:, 1:].view(np.float32)
    raise InvalidInputError(f"{path}: source files must be .fvecs or .npy")


def _is_dataset(source: Any) -> bool:
    try:
        from ray.data import Dataset
    except ImportError:
        return False
    return isinstance(source, Dataset)


# ---------------------------------------------------------------- build


def _train_task(spec, dim, metric, keep_raw, seed, sample) -> bytes:
    index = index_factory(dim, spec, metric, keep_raw=keep_raw, seed=seed)
    if not index.is_trained:
        index.train(sample)
    return index.serialize()


def _shard_task(trained: bytes, src, lo: int, hi: int, ids, path: str) -> Dict[str, Any]:
    """Adds rows ``lo..hi`` of ``src`` (a ``_Rows``) or a Ray Dataset shard
    (``("dataset", ds, column, id_column)``) to the trained empty index and saves it."""
    index = deserialize_index(trained)
    lo_id, hi_id = None, None

    def add(x, batch_ids):
        nonlocal lo_id, hi_id
        batch_ids = np.ascontiguousarray(batch_ids, dtype=np.int64).reshape(-1)
        index.add(x, batch_ids)
        if len(batch_ids):
            a, b = int(batch_ids.min()), int(batch_ids.max())
            lo_id = a if lo_id is None else min(lo_id, a)
            hi_id = b if hi_id is None else max(hi_id, b)

    if isinstance(src, _Rows):
        add(src.take(lo, hi), ids)
    else:
        _, ds, column, id_column = src
        start = 0
        for batch in ds.iter_batches(batch_format="numpy", batch_size=65536):
            x = np.ascontiguousarray(np.stack(batch[column]), dtype=np.float32)
            add(x, ids[start : start + len(x)] if id_column is None else batch[id_column])
            start += len(x)
    index.save(path)
    entry = _shard_entry(path, index)
    entry["id_min"], entry["id_max"] = lo_id, hi_id
    return entry


def _shard_entry(path: str, index) -> Dict[str, Any]:
    return {
        "file": os.path.basename(path),
        "count": index.ntotal,
        "sha256": _sha256(path),
        "bytes": os.path.getsize(path),
    }


def build_sharded(
    source: Any,
    spec: str,
    out_dir: Union[str, os.PathLike],
    num_shards: int,
    *,
    ids: Optional[np.ndarray] = None,
    train: Optional[np.ndarray] = None,
    train_size: int = 100_000,
    metric: str = "l2",
    keep_raw: bool = False,
    seed: int = 42,
    column: str = "embedding",
    id_column: Optional[str] = None,
) -> str:
    """Builds a sharded index on Ray and returns the path of its ``manifest.json``.

    The quantizer is trained **once**, in one task (on ``train`` if given, else on
    ``train_size`` rows of ``source`` sampled with ``seed``); the trained empty index is
    shipped to ``num_shards`` tasks that add their rows and save ``shard-00000.vq``, ...
    in ``out_dir`` in parallel. ``manifest.json`` (written atomically, last) records the
    format version, spec, dimension, metric, and per shard the file, count, id range
    and SHA-256.

    ``source``: a float array ``(n, d)``, a ``.fvecs``/``.npy`` path or a list of them
    (each shard task reads only its rows), or a Ray Dataset with a vector ``column``
    (ids from ``id_column`` if given). ``ids``: global ids, one per row (default
    ``0..n-1`` consecutively across shards).

    >>> manifest = build_sharded(x, "IVF1024,PQ32x4fs", "/shared/idx", 4)
    """
    ray = _ray()
    if num_shards < 1:
        raise InvalidInputError(f"num_shards must be at least 1; got {num_shards}")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)

    if _is_dataset(source):
        parts = source.split(num_shards)
        counts = [p.count() for p in parts]
        n = sum(counts)
        if train is None:
            batch = source.limit(train_size).take_batch(train_size, batch_format="numpy")
            train = np.stack(batch[column])
        dim = int(np.asarray(train).shape[1])
        work = [(("dataset", p, column, id_column), 0, c) for p, c in zip(parts, counts)]
    else:
        rows = _Rows(source)
        n, dim = rows.n, rows.dim
        bounds = np.linspace(0, n, num_shards + 1).astype(np.int64)
        counts = [int(bounds[i + 1] - bounds[i]) for i in range(num_shards)]
        if train is None:
            train = rows.sample(train_size, seed)
        rows_ref = ray.put(rows) if rows.array is not None else rows
        work = [(rows_ref, int(bounds[i]), int(bounds[i + 1])) for i in range(num_shards)]
    if ids is None:
        ids = np.arange(n, dtype=np.int64)
    else:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) != n:
            raise InvalidInputError(f"{len(ids)} ids given for {n} vectors")
    train = np.ascontiguousarray(train, dtype=np.float32)

    train_task = ray.remote(_train_task)
    trained = train_task.remote(spec, dim, metric, keep_raw, seed, train)
    trained_bytes = ray.get(trained)
    trained_path = os.path.join(out_dir, "trained.vq")
    deserialize_index(trained_bytes).save(trained_path)

    shard_task = ray.remote(_shard_task)
    refs, offsets = [], np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    for i, (src, lo, hi) in enumerate(work):
        shard_ids = ids[offsets[i] : offsets[i + 1]]
        path = os.path.join(out_dir, f"shard-{i:05d}.vq")
        refs.append(shard_task.remote(trained, src, lo, hi, shard_ids, path))
    shards = ray.get(refs)
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "spec": spec,
        "dim": dim,
        "metric": metric,
        "ntotal": int(sum(s["count"] for s in shards)),
        "trained": {"file": "trained.vq", "sha256": _sha256(trained_path)},
        "shards": shards,
    }
    path = os.path.join(out_dir, "manifest.json")
    _write_json_atomic(path, manifest)
    return path


# ---------------------------------------------------------------- manifest


def read_manifest(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """The manifest at ``path``, checked for its format, version and fields
    (``FileError`` naming the file and what is wrong)."""
    path = os.fspath(path)
    try:
        with open(path) as f:
            m = json.load(f)
    except json.JSONDecodeError as e:
        raise FileError(f"{path}: not a valid manifest (JSON error: {e})") from None
    except OSError as e:
        raise FileError(f"{path}: {e.strerror or e}") from None
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        raise FileError(f"{path}: not a {MANIFEST_FORMAT} manifest")
    if m.get("version") != MANIFEST_VERSION:
        raise FileError(
            f"{path}: manifest version {m.get('version')!r}; this vecquant reads "
            f"version {MANIFEST_VERSION}"
        )
    for key, kind in [("spec", str), ("dim", int), ("metric", str), ("shards", list)]:
        if not isinstance(m.get(key), kind):
            raise FileError(f"{path}: field `{key}` is missing or not a {kind.__name__}")
    for i, s in enumerate(m["shards"]):
        for key, kind in [("file", str), ("count", int), ("sha256", str)]:
            if not isinstance(s, dict) or not isinstance(s.get(key), kind):
                raise FileError(
                    f"{path}: shard {i}: field `{key}` is missing or not a {kind.__name__}"
                )
    return m


class _ShardActor:
    """One replica of one shard: the shard file, memory-mapped, checked against the
    manifest. Ray restarts it (re-running ``__init__``, which reloads the file)."""

    def __init__(self, path: str, sha256: str, count: int, threads: int = 0):
        from . import set_num_threads

        if threads > 0:
            set_num_threads(threads)
        self.path = path
        self.error: Optional[str] = None
        self.index = None
        try:
            got = _sha256(path)
            if got != sha256:
                self.error = (
                    f"{path}: checksum {got[:16]}… does not match the manifest's "
                    f"{sha256[:16]}…"
                )
                return
            self.index = _read_index(path)
            if self.index.ntotal != count:
                self.error = (
                    f"{path}: holds {self.index.ntotal} vectors; the manifest says {count}"
                )
        except (OSError, VecquantError) as e:
            self.error = str(e)

    def ready(self) -> Tuple[Optional[str], int]:
        return self.error, os.getpid()

    def search(self, q: np.ndarray, k: int, params: Dict[str, Any]):
        if self.index is None:
            raise FileError(self.error)
        return self.index.search(q, k, **params)

    def delete(self, ids: np.ndarray, persist: bool):
        n = self.index.delete(ids)
        if persist and n:
            self.index.save(self.path)
        return n, (_shard_entry(self.path, self.index) if persist else None)


class ShardedIndex:
    """A sharded index served by Ray actors: one per shard replica, each memory-mapping
    its shard file.

    ``search`` fans a query batch out to one replica of every shard, retries a shard
    once (on another replica, or the same one after Ray restarts it — ``max_restarts``)
    and merges the per-shard top-k, ties by id. A shard that stays down makes the call
    raise, unless ``allow_partial=True``: then the call returns ``(D, I, answered)``
    with the indices of the shards that answered.

    A shard whose file disagrees with the manifest (checksum, count) is an error naming
    the shard, raised here.

    >>> index = ShardedIndex("/shared/idx/manifest.json", replicas=2)
    >>> D, I = index.search(q, 10, nprobe=16)
    """

    def __init__(
        self,
        manifest: Union[str, os.PathLike],
        *,
        replicas: int = 1,
        actor_options: Optional[Dict[str, Any]] = None,
        max_restarts: int = 3,
        timeout: Optional[float] = None,
    ):
        ray = _ray()
        if replicas < 1:
            raise InvalidInputError(f"replicas must be at least 1; got {replicas}")
        self.manifest_path = os.fspath(manifest)
        self.dir = os.path.dirname(os.path.abspath(self.manifest_path))
        self.manifest = read_manifest(self.manifest_path)
        self.replicas = replicas
        self.timeout = timeout
        self.retries = 0
        self._options = {"max_restarts": max_restarts, "max_task_retries": 0}
        self._options.update(actor_options or {})
        self._threads = int(self._options.get("num_cpus", 0) or 0)
        self._lock = threading.Lock()
        self._turn = 0
        self.actors: List[List[Any]] = []
        for i in range(len(self.manifest["shards"])):
            self.actors.append(self._start(i))
        self._check_ready(range(len(self.actors)))

    def __getstate__(self):
        # Shipped to Ray Data workers by search_dataset: the actor handles travel, the
        # lock does not.
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- properties
    @property
    def d(self) -> int:
        return self.manifest["dim"]

    @property
    def spec(self) -> str:
        return self.manifest["spec"]

    @property
    def metric(self) -> str:
        return self.manifest["metric"]

    @property
    def ntotal(self) -> int:
        return sum(s["count"] for s in self.manifest["shards"])

    @property
    def num_shards(self) -> int:
        return len(self.manifest["shards"])

    def _start(self, i: int) -> List[Any]:
        ray = _ray()
        s = self.manifest["shards"][i]
        cls = ray.remote(_ShardActor).options(**self._options)
        path = os.path.join(self.dir, s["file"])
        return [
            cls.remote(path, s["sha256"], s["count"], self._threads)
            for _ in range(self.replicas)
        ]

    def _check_ready(self, shards) -> None:
        ray = _ray()
        for i in shards:
            for a in self.actors[i]:
                error, _ = ray.get(a.ready.remote(), timeout=self.timeout)
                if error is not None:
                    self.close()
                    raise FileError(
                        f"shard {i} ({self.manifest['shards'][i]['file']}) of "
                        f"{self.manifest_path}: {error}"
                    )

    def close(self) -> None:
        """Stops the shard actors."""
        ray = _ray()
        for group in self.actors:
            for a in group:
                ray.kill(a, no_restart=True)
        self.actors = []

    def _replica(self, i: int, attempt: int):
        group = self.actors[i]
        with self._lock:
            turn = self._turn
        return group[(turn + attempt) % len(group)]

    def _retry(self, i: int, q_ref, k: int, params: Dict[str, Any]):
        """The one retry of shard ``i``'s search. While Ray restarts the actor
        (``max_restarts``) it refuses calls as *unavailable* — the query never ran — so
        the retry waits for it to come back (up to ``timeout``, or
        ``RESTART_WAIT_SECS``) rather than counting a restart in progress as down."""
        ray = _ray()
        unavailable = getattr(ray.exceptions, "ActorUnavailableError", ())
        wait = self.timeout if self.timeout is not None else RESTART_WAIT_SECS
        deadline = time.monotonic() + wait
        while True:
            ref = self._replica(i, 1).search.remote(q_ref, k, params)
            try:
                return ray.get(ref, timeout=self.timeout)
            except unavailable:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    def search(
        self,
        q: Any,
        k: int,
        *,
        allow_partial: bool = False,
        **params: Any,
    ):
        """The ``k`` nearest neighbours of each row of ``q`` over all shards:
        ``(D, I)`` as ``Index.search`` returns them (float32 and int64 ``(nq, k)``,
        ``-1``/``inf`` padding). ``params``: ``nprobe``, ``ef``, ``rerank``. With
        ``allow_partial=True``: ``(D, I, answered)``, ``answered`` the indices of the
        shards whose results are merged."""
        ray = _ray()
        q = np.ascontiguousarray(q, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.d:
            raise InvalidInputError(
                f"dimension mismatch in search: expected (nq, {self.d}), got shape {q.shape}"
            )
        with self._lock:
            self._turn += 1
        q_ref = ray.put(q)
        pending = {i: self._replica(i, 0).search.remote(q_ref, k, params) for i in range(self.num_shards)}
        results: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
        failed: Dict[int, BaseException] = {}
        for i, ref in pending.items():
            try:
                results[i] = ray.get(ref, timeout=self.timeout)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as e:
                failed[i] = e
            except ray.exceptions.RayTaskError as e:
                # An error of the search itself (bad parameters): the same on every shard.
                raise e.as_instanceof_cause() from None
        for i, first in failed.items():
            self.retries += 1
            try:
                results[i] = self._retry(i, q_ref, k, params)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as e:
                if not allow_partial:
                    raise VecquantError(
                        f"shard {i} ({self.manifest['shards'][i]['file']}) did not answer "
                        f"after a retry: {e}"
                    ) from e
        answered = sorted(results)
        D, I = _merge([results[i] for i in answered], q.shape[0], k)
        if allow_partial:
            return D, I, answered
        return D, I

    def search_dataset(self, ds, k: int, *, column: str = "embedding", batch_size: int = 1024, **params: Any):
        """Offline batch retrieval over a Ray Dataset: adds ``ids`` (int64 ``k``) and
        ``distances`` (float32 ``k``) columns to every row of ``ds``, searching
        ``column`` in batches with ``map_batches``."""

        def search_batch(batch):
            x = np.ascontiguousarray(np.stack(batch[column]), dtype=np.float32)
            D, I = self.search(x, k, **params)
            batch["ids"] = I
            batch["distances"] = D
            return batch

        return ds.map_batches(search_batch, batch_format="numpy", batch_size=batch_size)

    def delete(self, ids: Any) -> int:
        """Deletes these ids from the shards that own them (the manifest's id ranges
        route each id); the shard files and the manifest are rewritten. Returns how many
        vectors were deleted."""
        ray = _ray()
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        total = 0
        for i, s in enumerate(self.manifest["shards"]):
            lo, hi = s.get("id_min"), s.get("id_max")
            mine = ids if lo is None else ids[(ids >= lo) & (ids <= hi)]
            if not len(mine):
                continue
            refs = [a.delete.remote(mine, r == 0) for r, a in enumerate(self.actors[i])]
            out = ray.get(refs, timeout=self.timeout)
            n, entry = out[0]
            if entry is not None:
                s.update({"count": entry["count"], "sha256": entry["sha256"], "bytes": entry["bytes"]})
            total += n
        if total:
            self.manifest["ntotal"] = self.ntotal
            _write_json_atomic(self.manifest_path, self.manifest)
        return total

    def add(self, x: Any, ids: Optional[Any] = None) -> int:
        """Adds ``x`` as a new shard (encoded with the shared trained quantizer, saved
        next to the others, the manifest updated atomically) and starts its actors.
        ``ids`` default: consecutive after the largest id held. Returns the shard's
        index."""
        ray = _ray()
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise InvalidInputError(f"x must be a 2-D array (n, d); got shape {x.shape}")
        if ids is None:
            top = max((s.get("id_max") or -1) for s in self.manifest["shards"]) if self.num_shards else -1
            ids = np.arange(top + 1, top + 1 + len(x), dtype=np.int64)
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        t = self.manifest["trained"]
        trained_path = os.path.join(self.dir, t["file"])
        if _sha256(trained_path) != t["sha256"]:
            raise FileError(f"{trained_path}: checksum does not match the manifest")
        with open(trained_path, "rb") as f:
            trained = f.read()
        i = self.num_shards
        path = os.path.join(self.dir, f"shard-{i:05d}.vq")
        rows = _Rows(x)
        if len(ids) != rows.n:
            raise InvalidInputError(f"{len(ids)} ids given for {rows.n} vectors")
        entry = ray.get(ray.remote(_shard_task).remote(trained, rows, 0, rows.n, ids, path))
        self.manifest["shards"].append(entry)
        self.manifest["ntotal"] = self.ntotal
        _write_json_atomic(self.manifest_path, self.manifest)
        self.actors.append(self._start(i))
        self._check_ready([i])
        return i


def _merge(parts: Sequence[Tuple[np.ndarray, np.ndarray]], nq: int, k: int):
    """The best ``k`` of the per-shard results of each query, by distance then id;
    ``-1``/``inf`` where fewer than ``k`` exist."""
    if not parts:
        return (
            np.full((nq, k), np.inf, dtype=np.float32),
            np.full((nq, k), -1, dtype=np.int64),
        )
    D = np.concatenate([p[0] for p in parts], axis=1)
    I = np.concatenate([p[1] for p in parts], axis=1)
    # Padding (-1, inf) sorts after every real result: its id key is the largest.
    key_id = np.where(I < 0, np.iinfo(np.int64).max, I)
    order = np.lexsort((key_id, D), axis=1)[:, :k]
    return (
        np.take_along_axis(D, order, axis=1).astype(np.float32, copy=False),
        np.take_along_axis(I, order, axis=1),
    )
