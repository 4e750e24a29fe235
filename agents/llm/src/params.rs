//! Trainable parameters of the modules: each module owns a [`VarStore`]
//! whose variables are initialised from emorl's own seeded generator (so
//! initialisation does not depend on libtorch's global RNG).

use std::collections::BTreeMap;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::error::{LlmAgentError, Result};

/// SplitMix64, for parameter initialisation.
#[derive(Debug, Clone)]
pub struct InitRng(u64);

impl InitRng {
    pub fn new(seed: u64, stream: &str) -> Self {
        let mut h = seed ^ 0x5851_F42D_4C95_7F2D;
        for b in stream.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
        InitRng(h)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// A module's parameters: a [`VarStore`] and the generator that initialises it.
#[derive(Debug)]
pub struct ParamStore {
    vs: VarStore,
    rng: InitRng,
}

impl ParamStore {
    pub fn new(seed: u64, module: &str, device: Device) -> Self {
        ParamStore {
            vs: VarStore::new(device),
            rng: InitRng::new(seed, module),
        }
    }

    /// A trainable variable drawn from `N(0, std²)`.
    pub fn normal(&mut self, name: &str, shape: &[i64], std: f64) -> Result<Tensor> {
        let n: i64 = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| (self.rng.normal() * std) as f32).collect();
        let t = Tensor::f_from_slice(&data)?.f_view(shape)?;
        Ok(self.vs.root().f_var_copy(&key(name), &t)?)
    }

    /// A trainable variable holding a copy of `value`.
    pub fn copy_of(&mut self, name: &str, value: &Tensor) -> Result<Tensor> {
        Ok(self.vs.root().f_var_copy(&key(name), value)?)
    }

    /// A trainable variable filled with `value`.
    pub fn constant(&mut self, name: &str, shape: &[i64], value: f64) -> Result<Tensor> {
        let t = Tensor::f_full(shape, value, (Kind::Float, Device::Cpu))?;
        Ok(self.vs.root().f_var_copy(&key(name), &t)?)
    }

    /// A linear layer `x W + b` with `W ~ N(0, 1/in)`, `b = 0`.
    pub fn linear(&mut self, name: &str, input: i64, output: i64) -> Result<Linear> {
        let std = 1.0 / (input.max(1) as f64).sqrt();
        Ok(Linear {
            weight: self.normal(&format!("{name}.weight"), &[input, output], std)?,
            bias: self.constant(&format!("{name}.bias"), &[output], 0.0)?,
        })
    }

    /// A non-trainable buffer holding `value` (saved with the checkpoint).
    pub fn buffer(&mut self, name: &str, value: &Tensor) -> Result<Tensor> {
        let t = self.vs.root().f_zeros_no_train(&key(name), &value.size())?;
        let _g = tch::no_grad_guard();
        let mut t2 = t.shallow_clone();
        t2.f_copy_(value)?;
        Ok(t)
    }

    /// Trainable tensors, sorted by name.
    pub fn trainable(&self) -> Vec<Tensor> {
        self.named()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(_, t)| t)
            .collect()
    }

    /// Every variable (buffers included), sorted by name.
    pub fn named(&self) -> Vec<(String, Tensor)> {
        let m: BTreeMap<String, Tensor> = self.vs.variables().into_iter().collect();
        m.into_iter().collect()
    }
}

/// VarStore names cannot hold dots: `a.b` is stored as `a_b`.
fn key(name: &str) -> String {
    name.replace('.', "_")
}

/// `x W + b`.
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Linear {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        x.f_matmul(&self.weight)?.f_add(&self.bias)
    }
}

/// Copies `tensors` (by name) into the variables of `stores`, each named
/// `<module>.<variable>`. Missing or extra names, shape mismatches and
/// non-finite values are errors.
pub fn load_named(
    stores: &[(&str, &ParamStore)],
    tensors: Vec<(String, Tensor)>,
) -> std::result::Result<(), String> {
    let mut by_name: BTreeMap<String, Tensor> = tensors.into_iter().collect();
    let _g = tch::no_grad_guard();
    for (module, store) in stores {
        for (name, var) in store.named() {
            let full = format!("{module}.{name}");
            let src = by_name
                .remove(&full)
                .ok_or_else(|| format!("tensor `{full}` is missing"))?;
            if src.size() != var.size() {
                return Err(format!(
                    "tensor `{full}` has shape {:?}, the agent expects {:?}",
                    src.size(),
                    var.size()
                ));
            }
            let finite = src
                .f_isfinite()
                .and_then(|f| f.f_all())
                .map_err(|e| e.to_string())?
                .int64_value(&[])
                != 0;
            if !finite {
                return Err(format!("tensor `{full}` holds NaN or infinite values"));
            }
            let mut v = var.shallow_clone();
            v.f_copy_(&src.f_to_kind(var.kind()).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
    }
    if let Some(extra) = by_name.keys().next() {
        return Err(format!(
            "tensor `{extra}` belongs to no module of this agent"
        ));
    }
    Ok(())
}

/// Copies of tensors' values (for restoring after a bad step).
pub fn snapshot(params: &[Tensor]) -> Result<Vec<Tensor>> {
    let _g = tch::no_grad_guard();
    Ok(params
        .iter()
        .map(|p| p.f_detach_copy())
        .collect::<Result<Vec<_>, _>>()?)
}

/// Writes `values` back into `params`.
pub fn restore(params: &[Tensor], values: &[Tensor]) -> Result<()> {
    let _g = tch::no_grad_guard();
    for (p, v) in params.iter().zip(values) {
        let mut p = p.shallow_clone();
        p.f_copy_(v)?;
    }
    Ok(())
}

/// Whether every value of every tensor is finite.
pub fn all_finite(params: &[Tensor]) -> Result<bool> {
    let _g = tch::no_grad_guard();
    for p in params {
        if p.f_isfinite()?.f_all()?.f_int64_value(&[])? == 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

pub(crate) fn invalid(msg: impl Into<String>) -> LlmAgentError {
    LlmAgentError::InvalidConfig(msg.into())
}
