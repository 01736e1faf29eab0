"""vecquant: quantized vector search with a FAISS-shaped numpy API.

>>> import numpy as np, vecquant
>>> x = np.random.default_rng(0).standard_normal((10_000, 64), dtype=np.float32)
>>> index = vecquant.index_factory(64, "SQ8")
>>> index.train(x)
>>> index.add(x)
>>> D, I = index.search(x[:5], 10)      # float32 (5, 10), int64 (5, 10)

Errors raised by vecquant derive from :class:`VecquantError`; bad input raises
:class:`InvalidInputError` (a ``ValueError``), file problems :class:`FileError` (an
``OSError``). ``vecquant.distributed`` builds and serves sharded indexes on Ray
(``pip install "vecquant[ray]"``).
"""

from ._vecquant import (
    SIMD_LEVEL,
    FileError,
    Index,
    InvalidInputError,
    VecquantError,
    deserialize_index,
    get_num_threads,
    index_factory,
    quantize_model,
    read_fvecs,
    read_index,
    read_ivecs,
    set_num_threads,
    write_fvecs,
)

__all__ = [
    "SIMD_LEVEL",
    "FileError",
    "Index",
    "InvalidInputError",
    "VecquantError",
    "deserialize_index",
    "get_num_threads",
    "index_factory",
    "quantize_model",
    "read_fvecs",
    "read_index",
    "read_ivecs",
    "set_num_threads",
    "write_fvecs",
]
