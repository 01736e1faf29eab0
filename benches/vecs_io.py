"""Reading .fvecs / .ivecs files (shared by the bench scripts; numpy only)."""

import numpy as np


def read_vecs(path, dtype):
    """The rows of a .fvecs (`dtype` np.float32) or .ivecs (np.int32) file, checked:
    every record must carry the first record's dimension and the file end on a record."""
    raw = np.fromfile(path, dtype=np.int32)
    if raw.size == 0:
        raise ValueError(f"{path}: empty")
    d = int(raw[0])
    if raw.size % (d + 1) != 0:
        raise ValueError(f"{path}: truncated")
    rows = raw.reshape(-1, d + 1)
    if not (rows[:, 0] == d).all():
        raise ValueError(f"{path}: inconsistent dimensions")
    return np.ascontiguousarray(rows[:, 1:]).view(dtype) if dtype == np.float32 else rows[:, 1:].copy()
