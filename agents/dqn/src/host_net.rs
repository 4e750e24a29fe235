//! The Q-network's MLP on the host: batched forward and backward over a flat
//! parameter slice, with the matrix products of [`crate::kernels`].
//!
//! A DQN here has a few thousand parameters and a batch of 64; through
//! libtorch an update is ≈ 45 small tensor operations whose per-call cost,
//! not the arithmetic, sets the speed. The same arithmetic written on slices
//! costs a few matrix products. The layout is libtorch's: per layer the weight
//! `[out, in]` (row-major) then the bias `[out]`, layers in order — the order
//! in which [`crate::network::Mlp`] registers its variables, so the two
//! backends share one parameter buffer ([`crate::flat_adam::FlatParams`]).
//!
//! Gradients are checked against libtorch's autograd in the tests below.

use crate::kernels::{gemm, Strided};

/// Shapes of an MLP `Linear → ReLU → … → Linear`; the parameters are passed
/// to each call as one flat slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostMlp {
    /// Layer widths, inputs first.
    sizes: Vec<usize>,
}

/// Activations kept by [`HostMlp::forward`] for [`HostMlp::backward`]:
/// `acts[0]` is the input, `acts[l]` the (post-ReLU) output of layer `l − 1`,
/// the last one the network's output. Buffers are reused across calls.
#[derive(Clone, Debug, Default)]
pub struct Tape {
    acts: Vec<Vec<f32>>,
    rows: usize,
    /// Gradient buffers reused by the backward pass.
    d_cur: Vec<f32>,
    d_prev: Vec<f32>,
    /// A layer's weight transposed, `[in, out]`.
    wt: Vec<f32>,
}

impl Tape {
    /// The network output of the last forward pass, `[rows, n_outputs]`.
    pub fn output(&self) -> &[f32] {
        self.acts.last().map_or(&[], Vec::as_slice)
    }
}

impl HostMlp {
    /// `sizes`: inputs, hidden widths…, outputs (at least two entries).
    pub fn new(sizes: Vec<usize>) -> Self {
        debug_assert!(sizes.len() >= 2);
        HostMlp { sizes }
    }

    pub fn n_inputs(&self) -> usize {
        self.sizes[0]
    }

    pub fn n_outputs(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }

    fn n_layers(&self) -> usize {
        self.sizes.len() - 1
    }

    /// Number of floats in the flat parameter slice.
    pub fn n_params(&self) -> usize {
        self.sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
    }

    /// Offsets of layer `l`'s weight and bias in the flat slice.
    fn offsets(&self, l: usize) -> (usize, usize) {
        let before: usize = self.sizes[..=l]
            .windows(2)
            .map(|w| w[0] * w[1] + w[1])
            .sum();
        (before, before + self.sizes[l] * self.sizes[l + 1])
    }

    /// `rows` inputs (`x`, row-major `[rows, n_inputs]`) through the network;
    /// the output is [`Tape::output`]. `None` when a slice has the wrong length.
    pub fn forward(&self, params: &[f32], x: &[f32], rows: usize, tape: &mut Tape) -> Option<()> {
        if params.len() != self.n_params() || x.len() != rows * self.n_inputs() {
            return None;
        }
        let n_layers = self.n_layers();
        tape.acts.resize_with(n_layers + 1, Vec::new);
        tape.rows = rows;
        tape.acts[0].clear();
        tape.acts[0].extend_from_slice(x);
        for l in 0..n_layers {
            let (n_in, n_out) = (self.sizes[l], self.sizes[l + 1]);
            let (w_off, b_off) = self.offsets(l);
            let w = &params[w_off..b_off];
            let b = &params[b_off..b_off + n_out];
            let (head, tail) = tape.acts.split_at_mut(l + 1);
            let h = head[l].as_slice();
            let out = &mut tail[0];
            out.clear();
            // Every row starts as the bias; then += h · Wᵀ.
            for _ in 0..rows {
                out.extend_from_slice(b);
            }
            if rows == 1 {
                // z = W · h: A = W read row by row, B = h as a column.
                let a = Strided {
                    data: w,
                    rs: n_in,
                    cs: 1,
                };
                gemm(n_out, 1, n_in, a, h, out, true);
            } else {
                tape.wt.clear();
                tape.wt.resize(n_in * n_out, 0.0);
                for (o, row) in w.chunks_exact(n_in).enumerate() {
                    for (i, &v) in row.iter().enumerate() {
                        tape.wt[i * n_out + o] = v;
                    }
                }
                let a = Strided {
                    data: h,
                    rs: n_in,
                    cs: 1,
                };
                gemm(rows, n_out, n_in, a, &tape.wt, out, true);
            }
            if l + 1 < n_layers {
                out.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
        Some(())
    }

    /// Gradient of `Σ d_out ⊙ output` with respect to the parameters, for the
    /// last forward pass on `tape`, written into `grad` (overwritten).
    pub fn backward(
        &self,
        params: &[f32],
        tape: &mut Tape,
        d_out: &[f32],
        grad: &mut [f32],
    ) -> Option<()> {
        let rows = tape.rows;
        let n_layers = self.n_layers();
        if params.len() != self.n_params()
            || grad.len() != params.len()
            || d_out.len() != rows * self.n_outputs()
            || tape.acts.len() != n_layers + 1
        {
            return None;
        }
        let Tape {
            acts,
            d_cur,
            d_prev,
            ..
        } = tape;
        d_cur.clear();
        d_cur.extend_from_slice(d_out);
        for l in (0..n_layers).rev() {
            let (n_in, n_out) = (self.sizes[l], self.sizes[l + 1]);
            let (w_off, b_off) = self.offsets(l);
            let dz = d_cur.as_slice();
            {
                // dW[out×in] = dZᵀ · H; db = column sums of dZ.
                let (gw, gb) = grad[w_off..b_off + n_out].split_at_mut(n_out * n_in);
                let dzt = Strided {
                    data: dz,
                    rs: 1,
                    cs: n_out,
                };
                gemm(n_out, n_in, rows, dzt, &acts[l], gw, false);
                gb.fill(0.0);
                for row in dz.chunks_exact(n_out) {
                    for (g, &d) in gb.iter_mut().zip(row) {
                        *g += d;
                    }
                }
            }
            if l == 0 {
                break;
            }
            // dH = dZ · W, then through the ReLU of layer l − 1 (its output
            // is positive exactly where its input was).
            d_prev.clear();
            d_prev.resize(rows * n_in, 0.0);
            let a = Strided {
                data: dz,
                rs: n_out,
                cs: 1,
            };
            gemm(rows, n_in, n_out, a, &params[w_off..b_off], d_prev, false);
            for (d, a) in d_prev.iter_mut().zip(&acts[l]) {
                if *a <= 0.0 {
                    *d = 0.0;
                }
            }
            std::mem::swap(d_cur, d_prev);
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Mlp;
    use emorl_core::{RngHandle, RngKind};
    use tch::{nn, Kind, Tensor};

    fn random(n: usize, rng: &RngHandle, scale: f64) -> Vec<f32> {
        rng.with(|r| {
            (0..n)
                .map(|_| ((2.0 * r.random() - 1.0) * scale) as f32)
                .collect()
        })
    }

    /// Forward outputs and parameter gradients equal libtorch's autograd on
    /// random inputs and random output gradients, for several shapes.
    #[test]
    fn gradients_match_libtorch_autograd() {
        for (seed, n_in, hidden, n_out, rows) in [
            (1u64, 4usize, vec![64usize, 64], 4usize, 64usize),
            (2, 5, vec![64, 32], 4, 7),
            (3, 3, vec![16], 2, 1),
            (4, 6, vec![8, 8, 8], 5, 33),
        ] {
            let rng = RngHandle::new(RngKind::Fast, seed);
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let mlp = Mlp::new(&vs.root(), n_in, &hidden, n_out, &rng).expect("mlp");
            let vars = vs.trainable_variables();
            let params: Vec<f32> = vars
                .iter()
                .flat_map(|t| Vec::<f32>::try_from(t.flatten(0, -1)).expect("vec"))
                .collect();
            let x = random(rows * n_in, &rng, 2.0);
            let d_out = random(rows * n_out, &rng, 1.0);

            let mut sizes = vec![n_in];
            sizes.extend(&hidden);
            sizes.push(n_out);
            let host = HostMlp::new(sizes);
            assert_eq!(host.n_params(), params.len());
            let mut tape = Tape::default();
            host.forward(&params, &x, rows, &mut tape).expect("forward");
            let mut grad = vec![0.0; params.len()];
            host.backward(&params, &mut tape, &d_out, &mut grad)
                .expect("backward");

            let xt = Tensor::from_slice(&x).view([rows as i64, n_in as i64]);
            let out = mlp.forward(&xt).expect("fwd");
            let out_host = Vec::<f32>::try_from(out.detach().flatten(0, -1)).expect("vec");
            for (a, b) in tape.output().iter().zip(&out_host) {
                assert!((a - b).abs() < 1e-4, "output {a} vs {b}");
            }
            let dt = Tensor::from_slice(&d_out).view([rows as i64, n_out as i64]);
            let loss = (out * dt).sum(Kind::Float);
            let grads = Tensor::run_backward(&[loss], &vars, false, false);
            let reference: Vec<f32> = grads
                .iter()
                .flat_map(|g| Vec::<f32>::try_from(g.flatten(0, -1)).expect("vec"))
                .collect();
            assert_eq!(reference.len(), grad.len());
            let scale = reference.iter().fold(0f32, |m, g| m.max(g.abs())).max(1.0);
            for (i, (a, b)) in grad.iter().zip(&reference).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * scale,
                    "seed {seed}: grad[{i}] {a} vs autograd {b}"
                );
            }
        }
    }

    #[test]
    fn wrong_lengths_are_refused() {
        let host = HostMlp::new(vec![3, 4, 2]);
        let params = vec![0.1; host.n_params()];
        let mut tape = Tape::default();
        assert!(host.forward(&params, &[0.0; 5], 2, &mut tape).is_none());
        assert!(host
            .forward(&params[1..], &[0.0; 6], 2, &mut tape)
            .is_none());
        host.forward(&params, &[0.0; 6], 2, &mut tape).expect("ok");
        let mut grad = vec![0.0; params.len()];
        assert!(host
            .backward(&params, &mut tape, &[0.0; 3], &mut grad)
            .is_none());
    }
}
