//! Null and top spaces of a covariance, once per run (the general subspaces every method may
//! build; ELoRA's knowledge space is in [`super::methods::elora`]).

use crate::exec::executor::Executor;
use crate::exec::ops::{Execute, StepContext};
use crate::exec::values::{PerLayer, Value};
use crate::sema::ops;
use candle_core::Tensor;

use crate::exec::error::Result;
use crate::linalg::{null_space_spectrum, principal_subspace, NullSpaceRule, Subspace};
use crate::sema::Cut;

/// The linear-algebra rule of a recipe's cut.
fn rule(cut: Cut) -> NullSpaceRule {
    match cut {
        Cut::Below(x) => NullSpaceRule::Below(x),
        Cut::Rank(k) => NullSpaceRule::Count(k),
        Cut::RelativeBelow(x) => NullSpaceRule::RelativeBelow(x),
        Cut::Energy(x) => NullSpaceRule::Energy(x),
    }
}

/// The principal subspace of a covariance.
pub fn top(covariance: &Tensor, rank: usize) -> Result<Subspace> {
    Ok(principal_subspace(covariance, rank)?)
}

impl Execute for ops::NullSpace {
    /// Keeps each layer's eigenvalues beside the space, for its leak ([`crate::exec::leak`]).
    fn execute(&self, ex: &mut Executor, cx: &mut StepContext<'_>) -> Result<()> {
        let (mut spaces, mut spectra) = (Vec::new(), Vec::new());
        for (l, c) in cx.values.covariance(self.covariance)?.iter() {
            let (space, values) = null_space_spectrum(c, rule(self.cut))?;
            spaces.push((*l, space));
            spectra.push((*l, values));
        }
        ex.spectra.insert(cx.step.id, PerLayer(spectra));
        cx.values.insert(cx.step.id, Value::Space(PerLayer(spaces)));
        Ok(())
    }
}

impl Execute for ops::TopSpace {
    fn execute(&self, _: &mut Executor, cx: &mut StepContext<'_>) -> Result<()> {
        let per_layer = (cx.values.covariance(self.covariance)?.iter())
            .map(|(l, c)| Ok((*l, top(c, self.rank)?)))
            .collect::<Result<Vec<_>>>()?;
        cx.values
            .insert(cx.step.id, Value::Space(PerLayer(per_layer)));
        Ok(())
    }
}
