//! The one optimiser of module parameters: AdamW (decoupled weight decay)
//! over named parameter groups, each with its own learning rate and weight
//! decay. Every objective of a training step adds its gradients to the same
//! parameters and one step applies them, so no two optimisers ever pull at
//! the same tensor with their own moment estimates.

use std::collections::BTreeMap;

use tch::Tensor;

use crate::error::Result;
use crate::params::invalid;

/// Parameters that share a learning rate and weight decay.
#[derive(Debug)]
pub struct ParamGroup {
    pub name: String,
    pub params: Vec<Tensor>,
    pub lr: f64,
    pub weight_decay: f64,
}

#[derive(Debug)]
struct Group {
    name: String,
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    lr: f64,
    weight_decay: f64,
}

/// AdamW over [`ParamGroup`]s.
#[derive(Debug)]
pub struct AdamW {
    groups: Vec<Group>,
    step: i64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl AdamW {
    /// One group of every parameter.
    pub fn new(params: Vec<Tensor>, lr: f64, weight_decay: f64) -> Result<Self> {
        Self::with_groups(vec![ParamGroup {
            name: "all".into(),
            params,
            lr,
            weight_decay,
        }])
    }

    /// One optimiser over `groups` (names must differ; a tensor belongs to
    /// one group only).
    pub fn with_groups(groups: Vec<ParamGroup>) -> Result<Self> {
        let mut seen = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            if !names.insert(g.name.clone()) {
                return Err(invalid(format!("optimiser: group `{}` twice", g.name)));
            }
            if !(g.lr >= 0.0 && g.lr.is_finite()) {
                return Err(invalid(format!(
                    "optimiser: group `{}` has learning rate {} (must be finite and >= 0)",
                    g.name, g.lr
                )));
            }
            for p in &g.params {
                if !seen.insert(p.data_ptr() as usize) {
                    return Err(invalid(format!(
                        "optimiser: a tensor of group `{}` is already in another group",
                        g.name
                    )));
                }
            }
            let zeros = |ps: &[Tensor]| -> Result<Vec<Tensor>> {
                Ok(ps
                    .iter()
                    .map(|p| p.f_zeros_like())
                    .collect::<Result<Vec<_>, _>>()?)
            };
            out.push(Group {
                m: zeros(&g.params)?,
                v: zeros(&g.params)?,
                name: g.name,
                params: g.params,
                lr: g.lr,
                weight_decay: g.weight_decay,
            });
        }
        Ok(AdamW {
            groups: out,
            step: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        })
    }

    /// Every parameter, group by group.
    pub fn params(&self) -> Vec<Tensor> {
        self.groups
            .iter()
            .flat_map(|g| g.params.iter().map(Tensor::shallow_clone))
            .collect()
    }

    /// `(group name, learning rate, parameter count)` of each group.
    pub fn groups(&self) -> Vec<(String, f64, i64)> {
        self.groups
            .iter()
            .map(|g| {
                (
                    g.name.clone(),
                    g.lr,
                    g.params.iter().map(Tensor::numel).sum::<usize>() as i64,
                )
            })
            .collect()
    }

    /// Steps taken so far.
    pub fn steps(&self) -> i64 {
        self.step
    }

    /// Clears the gradients of every parameter.
    pub fn zero_grad(&mut self) {
        for g in &mut self.groups {
            for p in &mut g.params {
                let mut grad = p.grad();
                if grad.defined() {
                    let _ = grad.f_zero_();
                }
            }
        }
    }

    /// Global L2 norm of the gradients; scales them down to `max_norm` when
    /// it is larger (`max_norm <= 0`: no clipping). Returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> Result<f64> {
        let _g = tch::no_grad_guard();
        let mut total = 0.0f64;
        // Frozen groups (learning rate 0) do not count.
        let live = || {
            self.groups
                .iter()
                .filter(|g| g.lr > 0.0)
                .flat_map(|g| &g.params)
        };
        for p in live() {
            let g = p.grad();
            if g.defined() {
                let n = g.f_norm()?.f_double_value(&[])?;
                total += n * n;
            }
        }
        let norm = total.sqrt();
        if max_norm > 0.0 && norm.is_finite() && norm > max_norm {
            let s = max_norm / (norm + 1e-6);
            for p in live() {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.f_mul_scalar_(s)?;
                }
            }
        }
        Ok(norm)
    }

    /// One AdamW step of every group (a group with learning rate 0 keeps
    /// its parameters and moments as they are).
    pub fn step(&mut self) -> Result<()> {
        let _g = tch::no_grad_guard();
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        for group in &mut self.groups {
            if group.lr == 0.0 {
                continue;
            }
            let (lr, wd) = (group.lr, group.weight_decay);
            for ((p, m), v) in group.params.iter().zip(&mut group.m).zip(&mut group.v) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let mut p = p.shallow_clone();
                if wd > 0.0 {
                    let _ = p.f_mul_scalar_(1.0 - lr * wd)?;
                }
                let _ = m.f_mul_scalar_(b1)?;
                let _ = m.f_add_(&g.f_mul_scalar(1.0 - b1)?)?;
                let _ = v.f_mul_scalar_(b2)?;
                let _ = v.f_add_(&g.f_mul(&g)?.f_mul_scalar(1.0 - b2)?)?;
                let denom = v.f_div_scalar(bc2)?.f_sqrt()?.f_add_scalar(eps)?;
                let upd = m.f_div_scalar(bc1)?.f_div(&denom)?.f_mul_scalar(lr)?;
                let _ = p.f_sub_(&upd)?;
            }
        }
        Ok(())
    }

    /// The moment estimates by name (`<group>.<index>.m` / `.v`), for a
    /// checkpoint; [`AdamW::steps`] is the step count that goes with them.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for g in &self.groups {
            for (i, (m, v)) in g.m.iter().zip(&g.v).enumerate() {
                out.push((format!("{}.{i}.m", g.name), m.f_detach_copy()?));
                out.push((format!("{}.{i}.v", g.name), v.f_detach_copy()?));
            }
        }
        Ok(out)
    }

    /// Restores moments written by [`AdamW::state`] and the step count.
    /// Every moment must be present with its parameter's shape.
    pub fn load_state(&mut self, tensors: Vec<(String, Tensor)>, steps: i64) -> Result<()> {
        let mut by_name: BTreeMap<String, Tensor> = tensors.into_iter().collect();
        let _g = tch::no_grad_guard();
        for g in &mut self.groups {
            for (i, (m, v)) in g.m.iter_mut().zip(&mut g.v).enumerate() {
                for (suffix, dst) in [("m", &mut *m), ("v", &mut *v)] {
                    let name = format!("{}.{i}.{suffix}", g.name);
                    let src = by_name
                        .remove(&name)
                        .ok_or_else(|| invalid(format!("optimiser state: `{name}` is missing")))?;
                    if src.size() != dst.size() {
                        return Err(invalid(format!(
                            "optimiser state: `{name}` has shape {:?}, expected {:?}",
                            src.size(),
                            dst.size()
                        )));
                    }
                    dst.f_copy_(&src.f_to_kind(dst.kind())?)?;
                }
            }
        }
        if let Some(extra) = by_name.keys().next() {
            return Err(invalid(format!(
                "optimiser state: `{extra}` belongs to no parameter group"
            )));
        }
        self.step = steps;
        Ok(())
    }
}
