//! Rotary position embeddings applied while splitting a projection's output into heads: one pass
//! from the linear's `(B, T, heads·hd)` to the attention's rotated `(B, heads, T, hd)`, with its
//! backward in one pass.
//!
//! Composed from candle's primitives the same work is a transposing copy, then `narrow`, `neg`,
//! `cat`, two broadcast products and a sum (five more passes, each allocating), and as many
//! backward nodes. In an ELoRA edit (`perf`) the composed rotation was about a sixth of the
//! knowledge space's samples (512 rows of 55 tokens through two layers).

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::simd::{vectorised, Kernel};
use super::{applies, gradient, values, with_values};

/// The rotation angles of a batch: each token's position, and `cos`/`sin` of every distinct
/// position's `half` angles (`position · inv_freq[i]`), one row of `half` per position value.
/// Rows of a batch share positions, so the table is as long as the longest row, not the batch.
#[derive(Debug)]
pub struct Angles {
    pub positions: Vec<u32>,
    pub half: usize,
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

impl Angles {
    /// The `half` values of `position`'s row of `table`.
    #[inline(always)]
    fn row<'a>(&self, table: &'a [f32], position: u32) -> &'a [f32] {
        &table[position as usize * self.half..][..self.half]
    }
}

/// `y` `(B, T, heads·hd)` split into heads and rotated, `(B, heads, T, hd)`; `None` where the
/// kernel does not apply (not contiguous CPU f32), for the caller's composed path.
pub fn rotate_heads(y: &Tensor, angles: &Arc<Angles>, heads: usize) -> Result<Option<Tensor>> {
    let (b, t, width) = y.dims3()?;
    let hd = 2 * angles.half;
    if !applies(&[y]) || width != heads * hd || angles.positions.len() != b * t {
        return Ok(None);
    }
    let op = Rope {
        angles: angles.clone(),
        dims: Dims { b, t, heads, hd },
    };
    Ok(Some(y.apply_op1(op)?))
}

#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    t: usize,
    heads: usize,
    hd: usize,
}

struct Rope {
    angles: Arc<Angles>,
    dims: Dims,
}

/// Forward (`inverse: false`): `x` in `(B, T, heads, hd)` order, `out` in `(B, heads, T, hd)`;
/// with `x = [x₁, x₂]` halves, `out = [x₁·c − x₂·s, x₂·c + x₁·s]`, which is Hugging Face's
/// `x·cos + rotate_half(x)·sin` to the bit. Backward (`inverse: true`): `x` is the gradient in
/// `(B, heads, T, hd)` order, `out` in `(B, T, heads, hd)`, rotated back by the transpose:
/// `[d₁·c + d₂·s, d₂·c − d₁·s]`.
struct Rotate<'a> {
    angles: &'a Angles,
    dims: Dims,
    inverse: bool,
    x: &'a [f32],
    out: &'a mut [f32],
}

impl Kernel for Rotate<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self {
            angles,
            dims: Dims { b, t, heads, hd },
            inverse,
            x,
            out,
        } = self;
        let half = angles.half;
        for bi in 0..b {
            for ti in 0..t {
                let position = angles.positions[bi * t + ti];
                let (c, s) = (
                    angles.row(&angles.cos, position),
                    angles.row(&angles.sin, position),
                );
                for h in 0..heads {
                    let token_major = ((bi * t + ti) * heads + h) * hd;
                    let head_major = ((bi * heads + h) * t + ti) * hd;
                    let (from, to) = if inverse {
                        (head_major, token_major)
                    } else {
                        (token_major, head_major)
                    };
                    let (x1, x2) = x[from..from + hd].split_at(half);
                    let (o1, o2) = out[to..to + hd].split_at_mut(half);
                    if inverse {
                        for i in 0..half {
                            o1[i] = x1[i] * c[i] + x2[i] * s[i];
                            o2[i] = x2[i] * c[i] - x1[i] * s[i];
                        }
                    } else {
                        for i in 0..half {
                            o1[i] = x1[i] * c[i] - x2[i] * s[i];
                            o2[i] = x2[i] * c[i] + x1[i] * s[i];
                        }
                    }
                }
            }
        }
    }
}

impl Rope {
    fn rotate(&self, x: &[f32], inverse: bool) -> Vec<f32> {
        let mut out = vec![0f32; x.len()];
        vectorised(Rotate {
            angles: &self.angles,
            dims: self.dims,
            inverse,
            x,
            out: &mut out,
        });
        out
    }
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "rope-heads"
    }

    fn cpu_fwd(&self, y: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = values(self.name(), y, layout)?;
        let Dims { b, t, heads, hd } = self.dims;
        Ok((
            CpuStorage::F32(self.rotate(x, false)),
            Shape::from((b, heads, t, hd)),
        ))
    }

    fn bwd(&self, y: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dy = with_values(self.name(), [grad], |[g]| self.rotate(g, true))?;
        Ok(Some(gradient(dy, y)?))
    }
}

#[cfg(test)]
mod tests {
    use crate::model::nn::gemm::tests::{max_diff, random};
    use crate::model::nn::rotary::Rotary;
    use candle_core::{DType, Device, Var};

    /// Left-padded rows: the second row's positions start later, as `TokenLayout` gives them.
    const POSITIONS: [u32; 10] = [0, 1, 2, 3, 4, 0, 0, 0, 1, 2];

    /// The fused split-and-rotate against the transposing copy plus the composed rotation, value
    /// (bit for bit in f32) and gradient (against f64).
    #[test]
    fn fused_equals_the_composed_rotation_and_its_gradient() {
        let (b, t, heads, hd) = (2, 5, 3, 8);
        let y0 = random(&[b, t, heads * hd], 31, DType::F64);
        let w = random(&[b, heads, t, hd], 32, DType::F64);
        let run = |dtype: DType, fused: bool| {
            let rotary = Rotary::new(&POSITIONS, b, hd, 10_000.0, dtype, &Device::Cpu).unwrap();
            let y = Var::from_tensor(&y0.to_dtype(dtype).unwrap()).unwrap();
            let out = if fused {
                rotary.heads(&y, heads).unwrap()
            } else {
                let split = y
                    .reshape((b, t, heads, hd))
                    .unwrap()
                    .transpose(1, 2)
                    .unwrap()
                    .contiguous()
                    .unwrap();
                rotary.apply(&split).unwrap()
            };
            let loss = (out.clone() * w.to_dtype(dtype).unwrap())
                .unwrap()
                .sum_all()
                .unwrap();
            let grad = loss.backward().unwrap().get(&y).unwrap().clone();
            (out, grad)
        };
        let fused = run(DType::F32, true);
        let composed32 = run(DType::F32, false);
        let composed64 = run(DType::F64, false);
        assert_eq!(fused.0.dims(), &[b, heads, t, hd]);
        assert!(fused.0.track_op());
        assert_eq!(max_diff(&fused.0, &composed32.0), 0.0);
        assert!(max_diff(&fused.1, &composed64.1) < 1e-6);
    }

    /// A strided input takes the composed path and gives the same values.
    #[test]
    fn a_strided_input_falls_back() {
        let (b, t, heads, hd) = (2, 5, 2, 4);
        let rotary = Rotary::new(&POSITIONS, b, hd, 10_000.0, DType::F32, &Device::Cpu).unwrap();
        let wide = random(&[b, heads * hd, t], 33, DType::F32);
        let strided = wide.transpose(1, 2).unwrap();
        let contiguous = strided.contiguous().unwrap();
        let a = rotary.heads(&strided, heads).unwrap();
        let c = rotary.heads(&contiguous, heads).unwrap();
        assert_eq!(max_diff(&a, &c), 0.0);
    }
}
