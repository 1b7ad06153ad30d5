//! Per-call instruments on named sites: capture, replace, add, or compute a new value.
//!
//! A [`Hooks`] set is passed to one forward call (or one generation) and observes or intervenes
//! there; persistent model changes are [`crate::model::adapters::Adapters`]. At a site the
//! adapters' shifts act first, then the hooks in the order they were added, so a capture sees
//! the edited model. Captured tensors keep their autograd graph (ASAM's rank loss
//! back-propagates through hidden states); call `detach()` before accumulating statistics.

use candle_core::Tensor;

use crate::model::batch::TokenLayout;
use crate::model::error::{ModelError, Result};
use crate::model::site::Site;

/// What a closure hook sees at a site.
pub struct SiteView<'a> {
    pub site: Site,
    /// The site's current value: `(B, T, width)` in a layer, `(N, hidden)` at `embed.*`.
    pub value: &'a Tensor,
    /// The same layer's block input (`layer(l).input`, the pre-attention residual stream);
    /// `None` at `embed.*`. UniKE computes its attention-output shift from it.
    pub block_input: Option<&'a Tensor>,
    /// Kinds and positions of the tokens in this pass (only the new tokens while decoding).
    pub layout: &'a TokenLayout,
}

/// A closure computing a tensor from a site view.
pub type HookFn<'a> = Box<dyn FnMut(&SiteView) -> candle_core::Result<Tensor> + 'a>;

/// One action at a site.
pub enum Hook<'a> {
    /// Keep the value (appended to [`Hooks::captured`] on every call).
    Capture,
    /// Use this tensor instead (same shape as the value).
    Replace(Tensor),
    /// Add this tensor (broadcast to the value's shape).
    Add(Tensor),
    /// Replace the value by what the closure returns (same shape). Prefer closures over fixed
    /// tensors during generation: each decoding step sees only the new tokens.
    Map(HookFn<'a>),
    /// Add what the closure returns (broadcast to the value's shape).
    AddFn(HookFn<'a>),
}

/// The hooks of one call, and what they captured.
#[derive(Default)]
pub struct Hooks<'a> {
    entries: Vec<(Site, Hook<'a>)>,
    captured: Vec<(Site, Tensor)>,
}

impl<'a> Hooks<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, site: Site, hook: Hook<'a>) -> &mut Self {
        self.entries.push((site, hook));
        self
    }

    pub fn capture(&mut self, site: Site) -> &mut Self {
        self.push(site, Hook::Capture)
    }

    pub fn replace(&mut self, site: Site, value: Tensor) -> &mut Self {
        self.push(site, Hook::Replace(value))
    }

    pub fn add(&mut self, site: Site, delta: Tensor) -> &mut Self {
        self.push(site, Hook::Add(delta))
    }

    pub fn map(
        &mut self,
        site: Site,
        f: impl FnMut(&SiteView) -> candle_core::Result<Tensor> + 'a,
    ) -> &mut Self {
        self.push(site, Hook::Map(Box::new(f)))
    }

    pub fn add_fn(
        &mut self,
        site: Site,
        f: impl FnMut(&SiteView) -> candle_core::Result<Tensor> + 'a,
    ) -> &mut Self {
        self.push(site, Hook::AddFn(Box::new(f)))
    }

    /// Calls `f` on every value at `site` without changing it: the way to accumulate statistics
    /// (a covariance over thousands of tokens) without keeping every tensor alive.
    pub fn observe(
        &mut self,
        site: Site,
        mut f: impl FnMut(&SiteView) -> candle_core::Result<()> + 'a,
    ) -> &mut Self {
        self.map(site, move |view| {
            f(view)?;
            Ok(view.value.clone())
        })
    }

    /// Sites with at least one hook.
    pub fn sites(&self) -> impl Iterator<Item = &Site> {
        self.entries.iter().map(|(s, _)| s)
    }

    /// Values captured at `site`, one per call (per decoding step during generation).
    pub fn captured(&self, site: &Site) -> Vec<&Tensor> {
        self.captured
            .iter()
            .filter(|(s, _)| s == site)
            .map(|(_, t)| t)
            .collect()
    }

    /// Takes every capture out, in the order they happened.
    pub fn take_captured(&mut self) -> Vec<(Site, Tensor)> {
        std::mem::take(&mut self.captured)
    }

    pub(crate) fn touches(&self, site: &Site) -> bool {
        self.entries.iter().any(|(s, _)| s == site)
    }

    /// Runs every hook registered at `view.site` on the value, in order.
    pub(crate) fn apply(&mut self, view: SiteView) -> Result<Tensor> {
        let SiteView {
            site,
            value,
            block_input,
            layout,
        } = view;
        let mut value = value.clone();
        for (s, hook) in self.entries.iter_mut() {
            if *s != site {
                continue;
            }
            value = match hook {
                Hook::Capture => {
                    self.captured.push((site, value.clone()));
                    value
                }
                Hook::Replace(t) => same_shape(site, &value, t.clone(), "replacement")?,
                Hook::Add(t) => add_broadcast(site, &value, t)?,
                Hook::Map(f) => {
                    let out = f(&SiteView {
                        site,
                        value: &value,
                        block_input,
                        layout,
                    })?;
                    same_shape(site, &value, out, "hook result")?
                }
                Hook::AddFn(f) => {
                    let out = f(&SiteView {
                        site,
                        value: &value,
                        block_input,
                        layout,
                    })?;
                    add_broadcast(site, &value, &out)?
                }
            };
        }
        Ok(value)
    }
}

pub(crate) fn same_shape(site: Site, value: &Tensor, new: Tensor, what: &str) -> Result<Tensor> {
    if new.shape() != value.shape() {
        return Err(ModelError::Site {
            site: site.to_string(),
            reason: format!(
                "{what} has shape {:?}, the site holds {:?}",
                new.dims(),
                value.dims()
            ),
        });
    }
    Ok(new.to_dtype(value.dtype())?)
}

pub(crate) fn add_broadcast(site: Site, value: &Tensor, delta: &Tensor) -> Result<Tensor> {
    let delta = delta
        .broadcast_as(value.shape())
        .map_err(|_| ModelError::Site {
            site: site.to_string(),
            reason: format!(
                "cannot add a tensor of shape {:?} to the site's {:?}",
                delta.dims(),
                value.dims()
            ),
        })?;
    Ok((value + delta.to_dtype(value.dtype())?)?)
}
