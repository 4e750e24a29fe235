//! Means and deviations computed the way numpy computes them.
//!
//! numpy's `sum`/`mean` use pairwise summation; exact ties in permutation tests
//! depend on it, so every mean we report goes through [`pairwise_sum`].

/// numpy's pairwise summation of a float64 array (unit stride).
pub fn pairwise_sum(x: &[f64]) -> f64 {
    let n = x.len();
    if n < 8 {
        let mut res = 0.0;
        for &v in x {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]];
        let full = n - n % 8;
        let mut i = 8;
        while i < full {
            for (k, acc) in r.iter_mut().enumerate() {
                *acc += x[i + k];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &x[full..] {
            res += v;
        }
        res
    } else {
        let mut m = n / 2;
        m -= m % 8;
        pairwise_sum(&x[..m]) + pairwise_sum(&x[m..])
    }
}

/// `np.mean(x)`; NaN for an empty slice.
pub fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    pairwise_sum(x) / x.len() as f64
}

/// `np.var(x, ddof=ddof)`; NaN when `n <= ddof`.
pub fn variance(x: &[f64], ddof: usize) -> f64 {
    if x.len() <= ddof {
        return f64::NAN;
    }
    let m = mean(x);
    let sq: Vec<f64> = x.iter().map(|v| (v - m) * (v - m)).collect();
    pairwise_sum(&sq) / (x.len() - ddof) as f64
}

/// `np.std(x, ddof=ddof)`.
pub fn std_dev(x: &[f64], ddof: usize) -> f64 {
    variance(x, ddof).sqrt()
}

/// Index of the first maximum (numpy `argmax`); 0 for an empty slice.
#[inline]
pub fn argmax(x: &[f64]) -> usize {
    let mut best = 0;
    for i in 1..x.len() {
        if x[i] > x[best] {
            best = i;
        }
    }
    best
}

/// Largest element (numpy `max`); -inf for an empty slice.
#[inline]
pub fn max(x: &[f64]) -> f64 {
    x.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// Smallest element (numpy `min`); +inf for an empty slice.
#[inline]
pub fn min(x: &[f64]) -> f64 {
    x.iter().copied().fold(f64::INFINITY, f64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_differs_from_naive_like_numpy() {
        // 0.1 * 10: numpy's np.sum gives 1.0 exactly, naive summation 0.9999999999999999.
        let x = vec![0.1; 10];
        let naive: f64 = x.iter().sum();
        assert_eq!(naive, 0.999_999_999_999_999_9);
        assert_eq!(pairwise_sum(&x), 1.0);
    }

    #[test]
    fn large_arrays_split_at_multiples_of_eight() {
        let x: Vec<f64> = (0..300).map(|i| (i as f64) * 0.37 + 0.01).collect();
        let exact: f64 = (0..300).map(|i| (i as f64) * 0.37 + 0.01).sum();
        assert!((pairwise_sum(&x) - exact).abs() < 1e-9);
    }

    #[test]
    fn std_uses_ddof() {
        let x = [1.0, 2.0, 3.0, 4.0];
        assert!((std_dev(&x, 1) - 1.290_994_448_735_805_6).abs() < 1e-15);
        assert!((std_dev(&x, 0) - 1.118_033_988_749_895).abs() < 1e-15);
    }

    #[test]
    fn argmax_takes_first_tie() {
        assert_eq!(argmax(&[0.0, 0.0, 0.0]), 0);
        assert_eq!(argmax(&[-1.0, 2.0, 2.0]), 1);
    }
}
