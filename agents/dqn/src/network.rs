//! The multilayer perceptron used for Q-values and for fear.

use crate::error::DqnError;
use emorl_core::RngHandle;
use tch::{nn, Tensor};

/// `Linear → ReLU → … → Linear`, initialised like PyTorch's `nn.Linear`
/// (weights and biases `U(−1/√fan_in, 1/√fan_in)`), but drawn from our own
/// generator so that parallel seeds never share torch's global one.
#[derive(Debug)]
pub struct Mlp {
    layers: Vec<nn::Linear>,
    /// Layer widths, inputs first.
    sizes: Vec<usize>,
    n_inputs: usize,
    n_outputs: usize,
}

impl Mlp {
    /// Registers the layers under `path` (`layers.0.weight`, …).
    pub fn new(
        path: &nn::Path,
        n_inputs: usize,
        hidden: &[usize],
        n_outputs: usize,
        rng: &RngHandle,
    ) -> Result<Self, DqnError> {
        let mut sizes = Vec::with_capacity(hidden.len() + 2);
        sizes.push(n_inputs);
        sizes.extend_from_slice(hidden);
        sizes.push(n_outputs);
        let p = path / "layers";
        let mut layers = Vec::with_capacity(sizes.len() - 1);
        for (i, w) in sizes.windows(2).enumerate() {
            let (fan_in, fan_out) = (w[0], w[1]);
            let bound = 1.0 / (fan_in as f64).sqrt();
            // PyTorch draws the weight, then the bias.
            let draw = |n: usize| -> Vec<f32> {
                rng.with(|r| {
                    (0..n)
                        .map(|_| ((2.0 * r.random() - 1.0) * bound) as f32)
                        .collect()
                })
            };
            let ws = Tensor::f_from_slice(&draw(fan_in * fan_out))?
                .f_view([fan_out as i64, fan_in as i64])?;
            let bs = Tensor::f_from_slice(&draw(fan_out))?;
            let lp = &p / i;
            layers.push(nn::Linear {
                ws: lp.f_var_copy("weight", &ws)?,
                bs: Some(lp.f_var_copy("bias", &bs)?),
            });
        }
        Ok(Mlp {
            layers,
            sizes,
            n_inputs,
            n_outputs,
        })
    }

    pub fn n_inputs(&self) -> usize {
        self.n_inputs
    }

    pub fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    /// Layer widths, inputs first (the shapes [`crate::host_net`] computes
    /// with: its flat parameter layout is this network's variables in
    /// registration order).
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// `[B, n_inputs] → [B, n_outputs]`.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor, DqnError> {
        let last = self.layers.len() - 1;
        let mut h = xs.shallow_clone();
        for (i, l) in self.layers.iter().enumerate() {
            h = h.f_linear(&l.ws, l.bs.as_ref())?;
            if i < last {
                h = h.f_relu()?;
            }
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emorl_core::RngKind;

    #[test]
    fn init_is_bounded_by_fan_in_and_reproducible() {
        let make = || {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let rng = RngHandle::new(RngKind::Fast, 3);
            let mlp = Mlp::new(&vs.root(), 4, &[64, 64], 4, &rng).expect("mlp");
            (vs, mlp)
        };
        let (vs, mlp) = make();
        let vars = vs.variables();
        assert_eq!(vars.len(), 6);
        let w0 = &vars["layers.0.weight"];
        assert_eq!(w0.size(), vec![64, 4]);
        let max0 = w0.abs().max().double_value(&[]);
        assert!(max0 <= 0.5 && max0 > 0.45, "fan-in 4 bound 0.5, got {max0}");
        let max1 = vars["layers.1.weight"].abs().max().double_value(&[]);
        assert!(
            max1 <= 0.125 && max1 > 0.12,
            "fan-in 64 bound 0.125, got {max1}"
        );
        let (vs2, _) = make();
        let same = vs2.variables()["layers.2.bias"].equal(&vars["layers.2.bias"]);
        assert!(same);
        let out = mlp
            .forward(&Tensor::zeros([3, 4], tch::kind::FLOAT_CPU))
            .expect("fwd");
        assert_eq!(out.size(), vec![3, 4]);
    }
}
