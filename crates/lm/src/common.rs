//! Pieces shared by the architectures: weight sources, attention masks and
//! positions for left-padded batches with a KV cache.

use tch::{Device, Kind, Tensor};

use crate::error::{LmError, Result};

/// The attention mask and positions of one forward step.
pub(crate) struct StepMask {
    /// `[batch, 1, seq, past + seq]`, `true` where a query may attend; `None`
    /// when every query may attend to every key (a single new token without
    /// padding).
    pub(crate) mask: Option<Tensor>,
    /// `[batch, seq]` position ids of the new tokens.
    pub(crate) positions: Tensor,
}

/// Builds the causal mask and the positions for `seq` new tokens after
/// `past` cached ones. `padding_mask` (`[batch, past + seq]`, nonzero for real
/// tokens) handles left padding: padded keys are masked out and positions
/// count only real tokens, as Hugging Face does (`cumsum(mask) - 1`).
/// Every query may always attend to itself, so no row is fully masked.
pub(crate) fn step_mask(
    padding_mask: Option<&Tensor>,
    batch: i64,
    seq: i64,
    past: i64,
    device: Device,
) -> Result<StepMask> {
    let kv = past + seq;
    let opts = (Kind::Int64, device);
    let pad = match padding_mask {
        Some(m) => {
            if m.size() != [batch, kv] {
                return Err(LmError::InvalidArgument(format!(
                    "padding mask has shape {:?}, expected [{batch}, {kv}] (batch, cached + new tokens)",
                    m.size()
                )));
            }
            Some(m.f_to_device(device)?.f_ne(0)?)
        }
        None => None,
    };
    let positions = match &pad {
        Some(p) => {
            let full = p
                .f_cumsum(-1, Kind::Int64)?
                .f_sub_scalar(1)?
                .f_clamp_min(0)?;
            full.f_narrow(1, past, seq)?
        }
        None => Tensor::f_arange_start(past, kv, opts)?
            .f_unsqueeze(0)?
            .f_expand([batch, seq], false)?,
    };
    if pad.is_none() && seq == 1 {
        return Ok(StepMask {
            mask: None,
            positions,
        });
    }
    let q_abs = Tensor::f_arange_start(past, kv, opts)?.f_unsqueeze(1)?; // [seq, 1]
    let k_idx = Tensor::f_arange(kv, opts)?.f_unsqueeze(0)?; // [1, kv]
    let causal = k_idx.f_le_tensor(&q_abs)?; // [seq, kv]
    let own = k_idx.f_eq_tensor(&q_abs)?; // [seq, kv]
    let mask = match &pad {
        Some(p) => causal
            .f_unsqueeze(0)?
            .f_logical_and(&p.f_unsqueeze(1)?)?
            .f_logical_or(&own.f_unsqueeze(0)?)?,
        None => causal.f_unsqueeze(0)?.f_expand([batch, seq, kv], false)?,
    };
    Ok(StepMask {
        mask: Some(mask.f_unsqueeze(1)?),
        positions,
    })
}

/// Extends a `[batch, 1, seq, kv]` boolean mask with `prefix` always-visible
/// keys in front.
pub(crate) fn with_prefix_columns(mask: &Tensor, prefix: i64) -> Result<Tensor> {
    let s = mask.size();
    let ones = Tensor::f_ones([s[0], s[1], s[2], prefix], (Kind::Bool, mask.device()))?;
    Ok(Tensor::f_cat(&[&ones, mask], 3)?)
}

/// Which positions a forward pass computes output-layer logits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogitsScope {
    /// Every position: `[batch, seq, vocab]` logits.
    #[default]
    All,
    /// Only the last position of each row (with left padding, every row's
    /// last real token): `[batch, 1, vocab]` logits. The final norm and the
    /// output layer run on that position only; read-outs still cover every
    /// position. Generation's prefill uses it.
    Last,
    /// No logits at all (`[batch, 0, vocab]`): the blocks run only up to
    /// the deepest read-out the hooks ask for, then stop. For reading
    /// hidden states; the KV cache is left incomplete, so only a stateless
    /// pass ([`crate::Model::read_out`]) uses it.
    ReadoutOnly,
}

/// The deepest read-out of `hooks` when `scope` stops there: blocks past
/// it need not run.
pub(crate) fn stop_after(scope: LogitsScope, hooks: Option<&crate::Hooks<'_>>) -> Option<usize> {
    match scope {
        LogitsScope::ReadoutOnly => Some(hooks.and_then(|h| h.deepest_readout()).unwrap_or(0)),
        _ => None,
    }
}

/// Empty `[batch, 0, vocab]` logits of a read-out-only pass.
fn no_logits(batch: i64, vocab: i64, device: tch::Device) -> tch::Result<Tensor> {
    Tensor::f_zeros([batch, 0, vocab], (Kind::Float, device))
}

/// The end of a forward pass after the last block ran on `x`
/// (`[batch, seq, hidden]`): the final `norm`, the logits of the positions
/// `scope` asks for through the tied or separate `lm_head` (its packed
/// copy where `packed` allows it), and the hooks'
/// logits processors; empty logits when the pass `stop`ped at a read-out.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_forward(
    x: Tensor,
    hidden: Vec<(usize, Tensor)>,
    stop: Option<usize>,
    scope: LogitsScope,
    norm: impl FnOnce(&Tensor) -> Result<Tensor>,
    lm_head: &crate::linear::Linear,
    packed: bool,
    hooks: Option<&crate::Hooks<'_>>,
) -> Result<ForwardOutput> {
    let size = x.size();
    let (b, t) = (size[0], size[1]);
    if stop.is_some() {
        let logits = no_logits(b, lm_head.out_features(), x.device())?;
        return Ok(ForwardOutput { logits, hidden });
    }
    let x = match scope {
        LogitsScope::Last if t > 1 => x.f_narrow(1, t - 1, 1)?,
        _ => x,
    };
    let x = norm(&x)?;
    let mut logits = lm_head.forward(&x, packed)?.f_to_kind(Kind::Float)?;
    if let Some(h) = hooks {
        logits = h.process_logits(logits)?;
    }
    Ok(ForwardOutput { logits, hidden })
}

/// Output of one forward pass.
#[derive(Debug)]
pub struct ForwardOutput {
    /// `[batch, seq, vocab]` logits in `f32`, after the hooks' logits processors.
    pub logits: Tensor,
    /// Requested read-outs, `(index, [batch, seq, hidden])`, ascending.
    pub hidden: Vec<(usize, Tensor)>,
}

/// Keys and values of one attention layer, `[batch, kv_heads, len, head_dim]`.
///
/// Appends after the first write into a preallocated buffer that grows
/// geometrically, instead of concatenating (copying the whole cache) at
/// every decode step. Where autograd is involved (any of the tensors
/// requires grad, e.g. trainable prefix keys/values) it concatenates, as
/// in-place writes would break the graph.
///
/// Rows that continue one prompt (RL samples) may share its positions
/// ([`KvCache::share_rows`]): the host decode path reads them in place, so
/// a decode step reads each prompt's keys and values once per prompt
/// instead of once per row; any other use copies them out first.
pub(crate) struct KvCache {
    /// Buffers; the first `len` positions are valid (after the shared
    /// ones, if any).
    k: Tensor,
    v: Tensor,
    /// Positions of each row, shared ones included.
    len: i64,
    /// Leading positions that hold prefix keys/values (not tokens).
    pub(crate) prefix_len: i64,
    shared: Option<SharedRows>,
}

/// Leading positions read from another cache's rows: row `r` reads the
/// first `len` positions of row `row_of[r]` of `k` and `v`.
struct SharedRows {
    k: Tensor,
    v: Tensor,
    len: i64,
    row_of: Vec<usize>,
}

/// A cache's buffers on the host (see [`KvCache::host_buffers`]).
pub(crate) struct HostKv<'a> {
    /// Each row's own positions, `[batch, kv_heads, cap, head_dim]`; the
    /// first `own` are filled.
    pub(crate) k: &'a mut [f32],
    pub(crate) v: &'a mut [f32],
    pub(crate) cap: usize,
    pub(crate) own: usize,
    /// The positions before them that rows share, if any.
    pub(crate) shared: Option<SharedKv<'a>>,
}

/// Shared leading positions: `[rows, kv_heads, cap, head_dim]` buffers of
/// which the first `len` positions are filled; batch row `r` reads row
/// `row_of[r]`.
pub(crate) struct SharedKv<'a> {
    pub(crate) k: &'a [f32],
    pub(crate) v: &'a [f32],
    pub(crate) cap: usize,
    pub(crate) len: usize,
    pub(crate) row_of: &'a [usize],
}

impl KvCache {
    /// A cache holding exactly `k` and `v` (no copy).
    pub(crate) fn new(k: Tensor, v: Tensor, prefix_len: i64) -> KvCache {
        let len = k.size().get(2).copied().unwrap_or(0);
        KvCache {
            k,
            v,
            len,
            prefix_len,
            shared: None,
        }
    }

    /// Positions in this cache's own buffers (after the shared ones).
    fn own_len(&self) -> i64 {
        self.len - self.shared.as_ref().map_or(0, |s| s.len)
    }

    /// Copies shared positions into each row's buffers (nothing to do for
    /// a cache without them).
    fn materialize(&mut self) -> Result<()> {
        let Some(sh) = self.shared.take() else {
            return Ok(());
        };
        let own = self.len - sh.len;
        let rows: Vec<i64> = sh.row_of.iter().map(|&r| r as i64).collect();
        let idx = Tensor::f_from_slice(&rows)?.f_to_device(sh.k.device())?;
        let join = |shared: &Tensor, mine: &Tensor| -> Result<Tensor> {
            let head = shared.f_narrow(2, 0, sh.len)?.f_index_select(0, &idx)?;
            let tail = mine.f_narrow(2, 0, own)?.f_to_kind(head.kind())?;
            Ok(Tensor::f_cat(&[&head, &tail], 2)?)
        };
        self.k = join(&sh.k, &self.k)?;
        self.v = join(&sh.v, &self.v)?;
        Ok(())
    }

    /// The cache of the batch rows `index` (`[new_batch]`, i64) of this one,
    /// in that order (a row may repeat). The valid positions are copied.
    pub(crate) fn select_rows(&mut self, index: &Tensor) -> Result<KvCache> {
        self.materialize()?;
        let k = self.k.f_narrow(2, 0, self.len)?.f_index_select(0, index)?;
        let v = self.v.f_narrow(2, 0, self.len)?.f_index_select(0, index)?;
        Ok(KvCache::new(k, v, self.prefix_len))
    }

    /// A cache whose row `r` continues row `row_of[r]` of this one, sharing
    /// its positions instead of copying them (copied where gradients flow).
    pub(crate) fn share_rows(&mut self, row_of: &[usize]) -> Result<KvCache> {
        self.materialize()?;
        let cs = self.k.size();
        let fits = cs.len() == 4 && row_of.iter().all(|&r| (r as i64) < cs[0]);
        if !fits || self.k.requires_grad() || self.v.requires_grad() {
            let rows: Vec<i64> = row_of.iter().map(|&r| r as i64).collect();
            let idx = Tensor::f_from_slice(&rows)?.f_to_device(self.k.device())?;
            return self.select_rows(&idx);
        }
        let empty = Tensor::f_empty(
            [row_of.len() as i64, cs[1], 0, cs[3]],
            (self.k.kind(), self.k.device()),
        )?;
        Ok(KvCache {
            k: empty.shallow_clone(),
            v: empty,
            len: self.len,
            prefix_len: self.prefix_len,
            // Contiguous, for the host path (a prefill's keys and values
            // are views of its projections).
            shared: Some(SharedRows {
                k: self.k.f_narrow(2, 0, self.len)?.f_contiguous()?,
                v: self.v.f_narrow(2, 0, self.len)?.f_contiguous()?,
                len: self.len,
                row_of: row_of.to_vec(),
            }),
        })
    }

    /// Appends `k` and `v` (`[batch, kv_heads, t, head_dim]`) and returns
    /// the whole cached keys and values.
    pub(crate) fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        self.materialize()?;
        let ks = k.size();
        let cs = self.k.size();
        if ks.len() != 4 || cs.len() != 4 || ks[0] != cs[0] || ks[1] != cs[1] || ks[3] != cs[3] {
            return Err(LmError::InvalidArgument(format!(
                "new keys {ks:?} do not fit the KV cache {cs:?} (batch, heads and head size must match; clear the cache first)"
            )));
        }
        let t = ks[2];
        let need = self.len + t;
        let grad = k.requires_grad()
            || v.requires_grad()
            || self.k.requires_grad()
            || self.v.requires_grad();
        if grad {
            let kk = Tensor::f_cat(&[&self.k.f_narrow(2, 0, self.len)?, k], 2)?;
            let vv = Tensor::f_cat(&[&self.v.f_narrow(2, 0, self.len)?, v], 2)?;
            *self = KvCache::new(kk.shallow_clone(), vv.shallow_clone(), self.prefix_len);
            return Ok((kk, vv));
        }
        if need > cs[2] {
            self.grow(need, k.kind())?;
        }
        self.k.f_narrow(2, self.len, t)?.f_copy_(k)?;
        self.v.f_narrow(2, self.len, t)?.f_copy_(v)?;
        self.len = need;
        Ok((self.k.f_narrow(2, 0, need)?, self.v.f_narrow(2, 0, need)?))
    }
}

impl KvCache {
    /// Moves the own positions into fresh `kind` buffers with room for
    /// `need` of them and more (geometric growth).
    fn grow(&mut self, need: i64, kind: Kind) -> Result<()> {
        let cs = self.k.size();
        let cap = (2 * need).max(need + 64);
        let len = self.own_len();
        let grow = |old: &Tensor| -> Result<Tensor> {
            let buf = Tensor::f_empty([cs[0], cs[1], cap, cs[3]], (kind, old.device()))?;
            buf.f_narrow(2, 0, len)?
                .f_copy_(&old.f_narrow(2, 0, len)?.f_to_kind(kind)?)?;
            Ok(buf)
        };
        self.k = grow(&self.k)?;
        self.v = grow(&self.v)?;
        Ok(())
    }

    /// The cache as host buffers with room for `extra` more positions in
    /// each row's own buffers (f32, CPU, contiguous), and the shared
    /// positions before them if any. Positions written past the own ones
    /// count once [`KvCache::advance`]d.
    pub(crate) fn host_buffers(&mut self, extra: i64) -> Result<HostKv<'_>> {
        let host =
            |t: &Tensor| t.kind() == Kind::Float && t.device() == Device::Cpu && t.is_contiguous();
        if self
            .shared
            .as_ref()
            .is_some_and(|s| !host(&s.k) || !host(&s.v) || s.k.size() != s.v.size())
        {
            self.materialize()?;
        }
        let need = self.own_len() + extra;
        let cs = self.k.size();
        let fits =
            cs.len() == 4 && cs[2] >= need && host(&self.k) && host(&self.v) && self.v.size() == cs;
        if !fits {
            if cs.len() != 4 {
                return Err(LmError::InvalidArgument(format!(
                    "KV cache of shape {cs:?}, expected [batch, kv_heads, len, head_dim]"
                )));
            }
            self.grow(need, Kind::Float)?;
        }
        let cap = self.k.size()[2] as usize;
        let own = self.own_len() as usize;
        let shared = match &self.shared {
            None => None,
            Some(sh) => Some(SharedKv {
                k: crate::host::f32_view(&sh.k)?,
                v: crate::host::f32_view(&sh.v)?,
                cap: sh.k.size()[2] as usize,
                len: sh.len as usize,
                row_of: &sh.row_of,
            }),
        };
        Ok(HostKv {
            k: crate::host::f32_view_mut(&mut self.k)?,
            v: crate::host::f32_view_mut(&mut self.v)?,
            cap,
            own,
            shared,
        })
    }

    /// Positions filled.
    pub(crate) fn len(&self) -> i64 {
        self.len
    }

    /// Counts `n` positions written through [`KvCache::host_buffers`].
    pub(crate) fn advance(&mut self, n: i64) {
        self.len += n;
    }
}

/// The KV-cache API of every architecture, written once: an architecture
/// says where its blocks' caches and its cached length live.
pub(crate) trait LayerCaches {
    /// Each block's attention cache.
    fn caches_mut(&mut self) -> impl Iterator<Item = &mut Option<KvCache>>;
    /// Tokens in the cache (prefix tokens not counted).
    fn past(&self) -> i64;
    fn set_past(&mut self, past: i64);

    /// Number of tokens in the KV cache.
    fn cache_len(&self) -> usize {
        self.past() as usize
    }

    /// Replaces the KV cache by its batch rows `index` (`[new_batch]`, i64;
    /// rows may repeat), e.g. to continue one prefilled prompt as several
    /// rows.
    fn select_cache_rows(&mut self, index: &Tensor) -> Result<()> {
        for c in self.caches_mut() {
            if let Some(kv) = c.as_mut() {
                *c = Some(kv.select_rows(index)?);
            }
        }
        Ok(())
    }

    /// As [`LayerCaches::select_cache_rows`], but the new row `r` shares
    /// the cached positions of row `row_of[r]` (see [`KvCache::share_rows`]).
    fn share_cache_rows(&mut self, row_of: &[usize]) -> Result<()> {
        for c in self.caches_mut() {
            if let Some(kv) = c.as_mut() {
                *c = Some(kv.share_rows(row_of)?);
            }
        }
        Ok(())
    }

    /// Empties the KV cache.
    fn clear_cache(&mut self) {
        for c in self.caches_mut() {
            *c = None;
        }
        self.set_past(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(t: i64) -> Tensor {
        Tensor::randn([2, 3, t, 4], (Kind::Float, Device::Cpu))
    }

    #[test]
    fn kv_cache_appends_like_concatenation() {
        let (k0, v0) = (r(5), r(5));
        let mut c = KvCache::new(k0.shallow_clone(), v0.shallow_clone(), 0);
        let (mut kk, mut vv) = (k0, v0);
        for t in [1, 1, 3, 70, 1, 200] {
            let (k, v) = (r(t), r(t));
            let (gk, gv) = c.append(&k, &v).unwrap();
            kk = Tensor::cat(&[&kk, &k], 2);
            vv = Tensor::cat(&[&vv, &v], 2);
            assert_eq!(gk.size(), kk.size());
            assert!(gk.equal(&kk) && gv.equal(&vv));
        }
        // A batch that does not fit is an error, not a silent broadcast.
        let bad = Tensor::randn([1, 3, 1, 4], (Kind::Float, Device::Cpu));
        assert!(c.append(&bad, &bad).is_err());
    }

    #[test]
    fn shared_rows_read_like_copied_rows() {
        let (k0, v0) = (r(5), r(5));
        let r3 = || Tensor::randn([3, 3, 1, 4], (Kind::Float, Device::Cpu));
        let rows = [1usize, 0, 1];
        let idx = Tensor::from_slice(&[1i64, 0, 1]);
        let mut copied = KvCache::new(k0.shallow_clone(), v0.shallow_clone(), 0)
            .select_rows(&idx)
            .unwrap();
        let mut shared = KvCache::new(k0, v0, 0).share_rows(&rows).unwrap();
        // One position written on the host into the rows' own buffers,
        // after the shared ones; the same position appended to the copy.
        let (xk, xv) = (r3(), r3());
        let kv = shared.host_buffers(1).unwrap();
        let sh = kv.shared.as_ref().expect("shared positions");
        assert_eq!((kv.own, sh.len, sh.row_of), (0, 5, &rows[..]));
        let (hk, hv) = (
            Vec::<f32>::try_from(xk.view([-1])).unwrap(),
            Vec::<f32>::try_from(xv.view([-1])).unwrap(),
        );
        for rg in 0..9 {
            kv.k[rg * kv.cap * 4..][..4].copy_from_slice(&hk[rg * 4..][..4]);
            kv.v[rg * kv.cap * 4..][..4].copy_from_slice(&hv[rg * 4..][..4]);
        }
        shared.advance(1);
        let _ = copied.append(&xk, &xv).unwrap();
        assert_eq!(shared.len(), 6);
        // A tensor append copies the shared positions out first.
        let (nk, nv) = (r3(), r3());
        let (sk, sv) = shared.append(&nk, &nv).unwrap();
        let (ck, cv) = copied.append(&nk, &nv).unwrap();
        assert!(sk.equal(&ck) && sv.equal(&cv));
    }

    #[test]
    fn kv_cache_keeps_gradients() {
        let p = r(2).set_requires_grad(true);
        let mut c = KvCache::new(p.shallow_clone(), p.shallow_clone(), 2);
        let _first = c.append(&r(1), &r(1)).unwrap();
        let (k, _) = c.append(&r(1), &r(1)).unwrap();
        k.sum(Kind::Float).backward();
        let g = p.grad();
        assert!(g.defined());
        assert_eq!(g.sum(Kind::Float).double_value(&[]), (2 * 3 * 2 * 4) as f64);
    }
}
