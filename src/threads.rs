//! Thread counts a user asks for (`--threads`), checked once at the boundary.
//!
//! Searches are CPU-bound, so threads beyond the cores only add switching; a count in
//! the thousands makes rayon and tokio's blocking pool start thousands of OS threads,
//! each with its own stack, and a run that should take seconds crawls or exhausts
//! memory. [`check_threads`] refuses such counts with a message that says what would
//! work instead.

use crate::error::{Error, Result};

/// Threads per core a user may ask for (oversubscription beyond this never helps a
/// CPU-bound search).
pub const THREADS_PER_CORE: usize = 4;

/// The fewest threads [`max_threads`] allows on any machine, so that small machines can
/// still run modest concurrency experiments.
pub const MIN_THREAD_LIMIT: usize = 64;

/// The most threads any machine may be asked for.
pub const MAX_THREADS: usize = 1024;

/// The number of cores (`std::thread::available_parallelism`, 1 when unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The largest thread count [`check_threads`] accepts here:
/// [`THREADS_PER_CORE`] × [`cores`], clamped to
/// [`MIN_THREAD_LIMIT`]..=[`MAX_THREADS`].
///
/// ```
/// let max = vecquant::threads::max_threads();
/// assert!((64..=1024).contains(&max));
/// ```
pub fn max_threads() -> usize {
    THREADS_PER_CORE
        .saturating_mul(cores())
        .clamp(MIN_THREAD_LIMIT, MAX_THREADS)
}

/// Checks a `--threads` value: at least 1 and at most [`max_threads`]. Returns it
/// unchanged when it is fine, else an [`Error::InvalidParameter`] naming `--threads`.
///
/// ```
/// use vecquant::threads::check_threads;
/// assert_eq!(check_threads(2).unwrap(), 2);
/// assert!(check_threads(0).is_err());
/// let e = check_threads(3000).unwrap_err().to_string();
/// assert!(e.contains("--threads") && e.contains("3000"), "{e}");
/// ```
pub fn check_threads(n: usize) -> Result<usize> {
    if n == 0 {
        return Err(Error::param(
            "--threads",
            "must be at least 1 (leave it out to use every core)",
        ));
    }
    let max = max_threads();
    if n > max {
        return Err(Error::param(
            "--threads",
            format!(
                "{n} threads is more than this machine can use: at most {max} \
                 ({THREADS_PER_CORE} per core on {} core(s), at least {MIN_THREAD_LIMIT}, \
                 never more than {MAX_THREADS}); leave it out to use every core",
                cores()
            ),
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let max = max_threads();
        assert!(max >= THREADS_PER_CORE * cores().min(MAX_THREADS / THREADS_PER_CORE));
        assert_eq!(check_threads(1).unwrap(), 1);
        assert_eq!(check_threads(max).unwrap(), max);
        for bad in [0, max + 1, 3000, usize::MAX] {
            let e = check_threads(bad).unwrap_err().to_string();
            assert!(e.contains("--threads"), "{bad}: {e}");
        }
        let e = check_threads(max + 1).unwrap_err().to_string();
        assert!(e.contains(&format!("at most {max}")), "{e}");
    }
}
