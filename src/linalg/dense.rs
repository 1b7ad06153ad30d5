//! The bridge between candle tensors and faer matrices.
//!
//! candle has no eigensolver or SVD, faer has both. A covariance of an 11008-wide FFN input is
//! ~1 GB in f64, so the bridge lends faer the tensor's own CPU buffer (row-major slice) instead of
//! copying it whenever the tensor already is a contiguous CPU tensor of the compute dtype. Every
//! matrix is checked for NaN/infinity on the way in: faer's iterative solvers would otherwise spin
//! or return garbage, and the user would never learn that the activations were broken.

use candle_core::{DType, Device, Storage, Tensor, WithDType};
use faer::traits::RealField;
use faer::MatRef;

use super::error::{Error, Result, TensorContext};

/// A precision the decompositions run in: f32 or f64, usable by both candle and faer.
pub(crate) trait Real: RealField + WithDType + Copy {}

impl Real for f32 {}
impl Real for f64 {}

/// The dtype a tensor of `dtype` is decomposed in. Half precisions are widened to f32 because
/// faer has no f16/bf16 kernels and their 3-digit mantissa cannot resolve small eigenvalues.
pub(crate) fn compute_dtype(op: &'static str, dtype: DType) -> Result<DType> {
    match dtype {
        DType::F64 => Ok(DType::F64),
        DType::F32 | DType::F16 | DType::BF16 => Ok(DType::F32),
        other => Err(Error::UnsupportedDType { op, dtype: other }),
    }
}

/// Rows and columns of a non-empty 2-D tensor.
pub(crate) fn matrix_dims(op: &'static str, t: &Tensor) -> Result<(usize, usize)> {
    match t.dims() {
        &[rows, cols] if rows > 0 && cols > 0 => Ok((rows, cols)),
        dims => Err(Error::NotAMatrix {
            op,
            shape: dims.to_vec(),
        }),
    }
}

/// Runs `f` on a faer view of the matrix `t` in precision `T`, after rejecting non-finite entries.
///
/// No copy is made when `t` already is a contiguous CPU tensor of dtype `T`; otherwise the tensor
/// is moved, converted or made contiguous first.
pub(crate) fn with_matrix<T: Real, R>(
    op: &'static str,
    t: &Tensor,
    f: impl FnOnce(MatRef<'_, T>) -> Result<R>,
) -> Result<R> {
    let (rows, cols) = matrix_dims(op, t)?;
    let t = t
        .to_device(&Device::Cpu)
        .and_then(|t| t.to_dtype(T::DTYPE))
        .and_then(|t| t.contiguous())
        .during(op)?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(internal(
            op,
            "tensor is not on the CPU after to_device(Cpu)",
        ));
    };
    let data = cpu.as_slice::<T>().during(op)?;
    let data = layout
        .contiguous_offsets()
        .and_then(|(start, end)| data.get(start..end))
        .filter(|data| data.len() == rows * cols)
        .ok_or_else(|| internal(op, "contiguous tensor has no contiguous buffer"))?;
    check_finite(op, data, cols)?;
    f(MatRef::from_row_major_slice(data, rows, cols))
}

/// Rejects the first NaN or infinity in a row-major buffer of `cols` columns.
pub(crate) fn check_finite<T: WithDType>(op: &'static str, data: &[T], cols: usize) -> Result<()> {
    match data.iter().position(|x| !x.to_f64().is_finite()) {
        None => Ok(()),
        Some(index) => Err(Error::NonFinite {
            op,
            position: format!(
                "row {}, column {}",
                index / cols.max(1),
                index % cols.max(1)
            ),
            value: data.get(index).map_or(f64::NAN, |x| x.to_f64()),
        }),
    }
}

/// The listed columns of `m`, in the listed order, as a `rows × columns.len()` tensor.
pub(crate) fn columns_to_tensor<T: Real>(
    op: &'static str,
    m: MatRef<'_, T>,
    columns: &[usize],
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let mut data = Vec::with_capacity(m.nrows() * columns.len());
    for i in 0..m.nrows() {
        for &j in columns {
            data.push(m[(i, j)]);
        }
    }
    finish(op, data, (m.nrows(), columns.len()), dtype, device)
}

/// All of `m` as a tensor.
pub(crate) fn matrix_to_tensor<T: Real>(
    op: &'static str,
    m: MatRef<'_, T>,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let columns: Vec<usize> = (0..m.ncols()).collect();
    columns_to_tensor(op, m, &columns, dtype, device)
}

/// A vector as a 1-D tensor.
pub(crate) fn vector_to_tensor<T: Real>(
    op: &'static str,
    values: Vec<T>,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let len = values.len();
    finish(op, values, len, dtype, device)
}

fn finish<T: Real, S: Into<candle_core::Shape>>(
    op: &'static str,
    data: Vec<T>,
    shape: S,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    Tensor::from_vec(data, shape, &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .and_then(|t| t.to_device(device))
        .during(op)
}

/// An invariant of candle broke; reported instead of panicking.
fn internal(op: &'static str, what: &str) -> Error {
    Error::Tensor {
        op,
        source: candle_core::Error::Msg(what.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_transposed_tensor_in_logical_order() -> Result<()> {
        let t = Tensor::new(&[[1.0f64, 2.0, 3.0], [4.0, 5.0, 6.0]], &Device::Cpu)
            .and_then(|t| t.t())
            .during("test")?;
        let entries = with_matrix::<f64, _>("test", &t, |m| {
            assert_eq!((m.nrows(), m.ncols()), (3, 2));
            Ok((m[(0, 1)], m[(2, 0)], m[(1, 1)]))
        })?;
        assert_eq!(entries, (4.0, 3.0, 5.0));
        Ok(())
    }

    #[test]
    fn widens_half_precision_to_f32() -> Result<()> {
        assert_eq!(compute_dtype("test", DType::BF16)?, DType::F32);
        assert_eq!(compute_dtype("test", DType::F64)?, DType::F64);
        assert!(matches!(
            compute_dtype("test", DType::U32),
            Err(Error::UnsupportedDType { .. })
        ));
        Ok(())
    }

    #[test]
    fn names_the_position_of_a_nan() {
        let t = Tensor::new(&[[1.0f32, 2.0], [3.0, f32::NAN]], &Device::Cpu);
        let t = t.expect("literal tensor");
        match with_matrix::<f32, ()>("test", &t, |_| Ok(())) {
            Err(Error::NonFinite { position, .. }) => assert_eq!(position, "row 1, column 1"),
            other => panic!("expected NonFinite, got {other:?}"),
        }
    }

    #[test]
    fn rejects_vectors_and_empty_matrices() -> Result<()> {
        let v = Tensor::new(&[1.0f64, 2.0], &Device::Cpu).during("test")?;
        assert!(matches!(
            matrix_dims("test", &v),
            Err(Error::NotAMatrix { .. })
        ));
        let empty = Tensor::zeros((0, 3), DType::F64, &Device::Cpu).during("test")?;
        assert!(matches!(
            matrix_dims("test", &empty),
            Err(Error::NotAMatrix { .. })
        ));
        Ok(())
    }

    #[test]
    fn round_trips_selected_columns() -> Result<()> {
        let t = Tensor::new(&[[1.0f64, 2.0, 3.0], [4.0, 5.0, 6.0]], &Device::Cpu).during("test")?;
        let picked = with_matrix::<f64, _>("test", &t, |m| {
            columns_to_tensor("test", m, &[2, 0], DType::F32, &Device::Cpu)
        })?;
        assert_eq!(picked.dtype(), DType::F32);
        assert_eq!(
            picked.to_vec2::<f32>().during("test")?,
            vec![vec![3.0, 1.0], vec![6.0, 4.0]]
        );
        Ok(())
    }
}
