//! Why a linear-algebra request was refused.
//!
//! Every variant names the operation that refused (`op`), because the executor calls these
//! primitives from several recipe steps and the user must see which one met the bad matrix.
//! No variant carries a source span: the caller that knows the recipe wraps these errors.

use candle_core::DType;

/// Errors from the linear algebra of `src/linalg`.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    #[error("{op}: expected a matrix, got a tensor of shape {shape:?}")]
    #[diagnostic(
        code(mkedsl::linalg::not_a_matrix),
        help("pass a 2-D tensor with at least one row and one column")
    )]
    NotAMatrix { op: &'static str, shape: Vec<usize> },

    #[error("{op}: expected a square matrix, got {rows}×{cols}")]
    #[diagnostic(
        code(mkedsl::linalg::not_square),
        help("eigendecompositions act on covariances (d×d); build one with CovarianceAccumulator")
    )]
    NotSquare {
        op: &'static str,
        rows: usize,
        cols: usize,
    },

    #[error(
        "{op}: matrix is not symmetric: entries ({row}, {col}) and ({col}, {row}) differ by {gap:e}"
    )]
    #[diagnostic(
        code(mkedsl::linalg::not_symmetric),
        help("eigh expects a covariance XᵀX; symmetrise it with (C + Cᵀ)/2 if rounding broke symmetry")
    )]
    NotSymmetric {
        op: &'static str,
        row: usize,
        col: usize,
        gap: f64,
    },

    #[error("{op}: non-finite value {value} at {position}")]
    #[diagnostic(
        code(mkedsl::linalg::non_finite),
        help("the activations or weights contain NaN or infinity; check the model's dtype and the learning rate")
    )]
    NonFinite {
        op: &'static str,
        /// Where the value sits, e.g. `row 3, column 7`.
        position: String,
        value: f64,
    },

    #[error("{op}: unsupported dtype {dtype:?}")]
    #[diagnostic(
        code(mkedsl::linalg::dtype),
        help("linear algebra runs on floating-point tensors (f16, bf16, f32, f64)")
    )]
    UnsupportedDType { op: &'static str, dtype: DType },

    #[error("{op}: dimension mismatch: expected {expected}, found {found}")]
    #[diagnostic(
        code(mkedsl::linalg::dimension),
        help("all tensors of one subspace computation must share the feature dimension")
    )]
    DimensionMismatch {
        op: &'static str,
        expected: usize,
        found: usize,
    },

    #[error("{op}: {reason}")]
    #[diagnostic(
        code(mkedsl::linalg::empty_subspace),
        help("loosen the rule: raise the eigenvalue threshold or ask for more directions")
    )]
    EmptySelection { op: &'static str, reason: String },

    #[error("{op}: invalid argument: {reason}")]
    #[diagnostic(code(mkedsl::linalg::invalid_argument), help("{help}"))]
    InvalidArgument {
        op: &'static str,
        reason: String,
        help: String,
    },

    #[error("{op}: the iterative solver did not converge")]
    #[diagnostic(
        code(mkedsl::linalg::no_convergence),
        help(
            "the matrix is badly scaled; normalise the activations (e.g. use the mean covariance)"
        )
    )]
    NoConvergence { op: &'static str },

    #[error("{op}: tensor operation failed: {source}")]
    #[diagnostic(
        code(mkedsl::linalg::tensor),
        help("this is a tensor-runtime failure; report it with the recipe")
    )]
    Tensor {
        op: &'static str,
        #[source]
        source: candle_core::Error,
    },
}

/// Results of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// Attaches the operation name to a candle error, so a failure deep in a tensor op still says
/// which linear-algebra primitive it belongs to.
pub(crate) trait TensorContext<T> {
    fn during(self, op: &'static str) -> Result<T>;
}

impl<T> TensorContext<T> for candle_core::Result<T> {
    fn during(self, op: &'static str) -> Result<T> {
        self.map_err(|source| Error::Tensor { op, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miette::Diagnostic;

    #[test]
    fn errors_are_diagnostics_with_a_code_and_a_help_line() {
        let err = Error::NonFinite {
            op: "eigh",
            position: "row 2, column 5".into(),
            value: f64::NAN,
        };
        assert_eq!(
            err.to_string(),
            "eigh: non-finite value NaN at row 2, column 5"
        );
        assert_eq!(
            err.code().map(|c| c.to_string()).as_deref(),
            Some("mkedsl::linalg::non_finite")
        );
        assert!(err.help().is_some());
        let report = miette::Report::new(err);
        assert!(format!("{report:?}").contains("row 2, column 5"));
    }
}
