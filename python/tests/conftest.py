"""Shared fixtures: seeded data, the CLI binary when it is built, one local Ray cluster."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli_binary():
    """The `vecquant` CLI if it is built (CI builds it with `cargo test --release`
    first): $VECQUANT_CLI, then $CARGO_TARGET_DIR/release, then target/release."""
    candidates = [os.environ.get("VECQUANT_CLI")]
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(os.path.join(os.environ["CARGO_TARGET_DIR"], "release", "vecquant"))
    candidates.append(str(ROOT / "target" / "release" / "vecquant"))
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return shutil.which("vecquant")


@pytest.fixture
def cli():
    exe = cli_binary()
    if exe is None:
        pytest.skip("the vecquant CLI is not built (cargo build --release)")
    return exe


@pytest.fixture(scope="session")
def data():
    """2,000 base, 100 query vectors of dimension 32, Gaussian, seeded."""
    rng = np.random.default_rng(19)
    base = rng.standard_normal((2000, 32), dtype=np.float32)
    query = rng.standard_normal((100, 32), dtype=np.float32)
    return base, query


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster (2 CPUs, loopback) for the whole session."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    yield ray
    ray.shutdown()
