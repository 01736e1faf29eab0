//! Plain scalar reference kernels. They define the results the SIMD versions must match.

/// Squared Euclidean distance, scalar reference.
pub fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
    // Four independent accumulators: the same association the SIMD code uses per lane,
    // and lets the compiler pipeline the adds.
    let mut acc = [0.0f32; 4];
    let chunks = a.len() / 4;
    for i in 0..chunks {
        for l in 0..4 {
            let d = a[4 * i + l] - b[4 * i + l];
            acc[l] += d * d;
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for i in chunks * 4..a.len() {
        let d = a[i] - b[i];
        s += d * d;
    }
    s
}

/// Inner product, scalar reference.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 4];
    let chunks = a.len() / 4;
    for i in 0..chunks {
        for l in 0..4 {
            acc[l] += a[4 * i + l] * b[4 * i + l];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for i in chunks * 4..a.len() {
        s += a[i] * b[i];
    }
    s
}
