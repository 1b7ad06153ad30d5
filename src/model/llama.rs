//! The Llama decoder of a LLaVA model, with a site at every tensor a recipe can name.
//!
//! Written in candle's style (`load(vb, cfg)` walking the Hugging Face names) but from
//! differentiable ops only: softmax, RMSNorm and the gated activation as fused ops with their own
//! backward (`nn/fused`), rotary embeddings from primitives, and faer's products (`nn/gemm.rs`),
//! which give no gradient to a base weight that is not being trained.

use candle_core::{Device, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::model::batch::TokenLayout;
use crate::model::clip::unknown_act;
use crate::model::config::TextConfig;
use crate::model::error::{ModelError, Result};
use crate::model::nn::activation::Activation;
use crate::model::nn::linear::Linear;
use crate::model::nn::norm::RmsNorm;
use crate::model::nn::rotary::Rotary;
use crate::model::nn::{attention_softmax, gemm};
use crate::model::pass::{Pass, StopAt};
use crate::model::site::{LayerPoint, LinearSite, Proj, Site};

/// Keys and values of earlier tokens, per layer, for incremental decoding.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    /// Which cached key columns are real tokens, row-major `(B, len)`.
    key_valid: Vec<bool>,
    batch: usize,
    len: usize,
}

impl KvCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of cached positions per row.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
}

#[derive(Debug, Clone)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

/// Shapes and constants the forward pass needs.
#[derive(Debug, Clone)]
struct Shape {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    rope_theta: f64,
    act: Activation,
}

/// The decoder (`language_model.*`).
#[derive(Debug, Clone)]
pub struct LlamaDecoder {
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    tied: bool,
    shape: Shape,
}

impl DecoderLayer {
    fn load(vb: VarBuilder, cfg: &TextConfig) -> Result<Self> {
        let d = cfg.hidden_size;
        let q = cfg.num_attention_heads * cfg.head_dim();
        let kv = cfg.kv_heads() * cfg.head_dim();
        let (ab, mb) = (cfg.attention_bias, cfg.mlp_bias);
        let a = vb.pp("self_attn");
        let m = vb.pp("mlp");
        Ok(Self {
            input_layernorm: RmsNorm::load(vb.pp("input_layernorm"), d, cfg.rms_norm_eps)?,
            self_attn: Attention {
                q_proj: Linear::load(a.pp("q_proj"), d, q, ab)?,
                k_proj: Linear::load(a.pp("k_proj"), d, kv, ab)?,
                v_proj: Linear::load(a.pp("v_proj"), d, kv, ab)?,
                o_proj: Linear::load(a.pp("o_proj"), q, d, ab)?,
            },
            post_attention_layernorm: RmsNorm::load(
                vb.pp("post_attention_layernorm"),
                d,
                cfg.rms_norm_eps,
            )?,
            mlp: Mlp {
                gate_proj: Linear::load(m.pp("gate_proj"), d, cfg.intermediate_size, mb)?,
                up_proj: Linear::load(m.pp("up_proj"), d, cfg.intermediate_size, mb)?,
                down_proj: Linear::load(m.pp("down_proj"), cfg.intermediate_size, d, mb)?,
            },
        })
    }

    fn linear(&self, proj: Proj) -> &Linear {
        match proj {
            Proj::Q => &self.self_attn.q_proj,
            Proj::K => &self.self_attn.k_proj,
            Proj::V => &self.self_attn.v_proj,
            Proj::O => &self.self_attn.o_proj,
            Proj::Gate => &self.mlp.gate_proj,
            Proj::Up => &self.mlp.up_proj,
            Proj::Down => &self.mlp.down_proj,
        }
    }

    fn linear_mut(&mut self, proj: Proj) -> &mut Linear {
        match proj {
            Proj::Q => &mut self.self_attn.q_proj,
            Proj::K => &mut self.self_attn.k_proj,
            Proj::V => &mut self.self_attn.v_proj,
            Proj::O => &mut self.self_attn.o_proj,
            Proj::Gate => &mut self.mlp.gate_proj,
            Proj::Up => &mut self.mlp.up_proj,
            Proj::Down => &mut self.mlp.down_proj,
        }
    }

    /// One decoder layer on `x`: the attention half, then the feed-forward half. A pass that
    /// starts past this layer's attention gets the residual after it as `x`; one that stops
    /// after the attention returns that residual.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        l: usize,
        x: Tensor,
        shape: &Shape,
        queries: &Queries,
        pass: &mut Pass,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
    ) -> Result<Tensor> {
        let x = if pass.starts_past_attention(l) {
            queries.rows(&x)?
        } else {
            self.attention_half(l, x, shape, queries, pass, cache)?
        };
        if pass.stops_at(l, StopAt::AfterAttention) {
            return Ok(x);
        }
        self.feed_forward_half(l, x, shape, pass)
    }

    /// Self-attention (and UniKE's memory reads) with its residual add, for the tokens of
    /// `queries` (keys and values from every token).
    fn attention_half(
        &self,
        l: usize,
        x: Tensor,
        shape: &Shape,
        queries: &Queries,
        pass: &mut Pass,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
    ) -> Result<Tensor> {
        let site = |p: LayerPoint| Site::Layer(l, p);
        let lin = |p: Proj| LinearSite::new(l, p);
        let x = pass.at(site(LayerPoint::Input), x)?;
        pass.block_input = Some(x.clone());
        let h = pass.at(
            site(LayerPoint::AttnInput),
            self.input_layernorm.forward(&x)?,
        )?;
        let (b, t, _) = h.dims3()?;
        let hd = shape.head_dim;
        let q_rows = pass.linear(lin(Proj::Q), &self.self_attn.q_proj, queries.rows(&h)?)?;
        let q = queries.rotary().heads(&q_rows, shape.heads)?;
        let k = pass.linear(lin(Proj::K), &self.self_attn.k_proj, h.clone())?;
        let mut k = queries.keys_rotary.heads(&k, shape.kv_heads)?;
        let mut v = pass
            .linear(lin(Proj::V), &self.self_attn.v_proj, h)?
            .reshape((b, t, shape.kv_heads, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        if let Some(slot) = cache {
            if let Some((pk, pv)) = slot.as_ref() {
                k = Tensor::cat(&[pk, &k], 2)?;
                v = Tensor::cat(&[pv, &v], 2)?;
            }
            *slot = Some((k.clone(), v.clone()));
        }
        let scale = 1.0 / (hd as f64).sqrt();
        let (_, y) = grouped_attention(&q, &k, &v, scale, Some(&queries.bias))?;
        let x = queries.rows(&x)?;
        let tq = x.dim(1)?;
        let y = y.transpose(1, 2)?.reshape((b, tq, shape.heads * hd))?;
        let y = pass.linear(lin(Proj::O), &self.self_attn.o_proj, y)?;
        let y = self.read_memories(l, &x, &q_rows, y, shape, pass)?;
        let y = pass.at(site(LayerPoint::AttnOutput), y)?;
        Ok((x + y)?)
    }

    /// The feed-forward block (with extra neurons) and its residual add.
    fn feed_forward_half(
        &self,
        l: usize,
        x: Tensor,
        shape: &Shape,
        pass: &mut Pass,
    ) -> Result<Tensor> {
        let site = |p: LayerPoint| Site::Layer(l, p);
        let lin = |p: Proj| LinearSite::new(l, p);
        let h = pass.at(
            site(LayerPoint::MlpInput),
            self.post_attention_layernorm.forward(&x)?,
        )?;
        let gate = pass.linear(lin(Proj::Gate), &self.mlp.gate_proj, h.clone())?;
        let up = pass.linear(lin(Proj::Up), &self.mlp.up_proj, h.clone())?;
        let act = pass.at(site(LayerPoint::MlpAct), shape.act.gated(&gate, &up)?)?;
        if pass.stops_at(l, StopAt::BeforeDownProj) {
            // The down projection's input hooks see the activation as in a whole pass.
            return pass.at(Site::proj_input(lin(Proj::Down)), act);
        }
        let mut out = pass.linear(lin(Proj::Down), &self.mlp.down_proj, act)?;
        if let Some(extra) = pass.adapters.neuron_output(l, &h)? {
            out = (out + extra)?;
        }
        let out = pass.at(site(LayerPoint::MlpOutput), out)?;
        let x = (x + out)?;
        let x = pass.at(site(LayerPoint::Output), x)?;
        pass.block_input = None;
        Ok(x)
    }
}

impl DecoderLayer {
    /// UniKE Eq. 2 / 7 at this layer (see [`crate::model::memory`]): every memory attached here
    /// mixes `h_know = Attn(x, X_know, X_know)`, computed with this layer's own norm and
    /// projections, into the attention output `y` with its gate's α. `query` is the layer's
    /// query projection `(B, T, heads·hd)`, before rotary positions.
    fn read_memories(
        &self,
        l: usize,
        x: &Tensor,
        query: &Tensor,
        y: Tensor,
        shape: &Shape,
        pass: &Pass,
    ) -> Result<Tensor> {
        let memories = pass.adapters.memories_at(l);
        if memories.iter().all(|m| m.is_inert()) {
            return Ok(y);
        }
        let (b, t, d) = x.dims3()?;
        let (rows, heads, kv, hd) = (b * t, shape.heads, shape.kv_heads, shape.head_dim);
        let x = x.reshape((rows, d))?;
        let query = query.reshape((rows, heads, 1, hd))?;
        let lin = |p: Proj| LinearSite::new(l, p);
        let mut y = y.reshape((rows, d))?;
        for memory in memories.iter().filter(|m| !m.is_inert()) {
            let found = memory.retrieve(&x)?;
            let k = found.k;
            let entries = memory.values.index_select(&found.distinct, 0)?;
            let normed = self.input_layernorm.forward(&entries)?;
            // Projected once per distinct entry, then gathered for every row that retrieved it.
            // `(rows, kv, k, hd)` views of the gathered rows: the products read them strided.
            let heads_of = |z: Tensor| -> Result<Tensor> {
                Ok(z.index_select(&found.slot, 0)?
                    .reshape((rows, k, kv, hd))?
                    .transpose(1, 2)?)
            };
            let keys =
                heads_of(pass.linear_unhooked(lin(Proj::K), &self.self_attn.k_proj, &normed)?)?;
            let values =
                heads_of(pass.linear_unhooked(lin(Proj::V), &self.self_attn.v_proj, &normed)?)?;
            let scale = 1.0 / (hd as f64).sqrt();
            let (probs, mixed) = grouped_attention(&query, &keys, &values, scale, None)?;
            let mixed = mixed.reshape((rows, heads * hd))?;
            let know = pass.linear_unhooked(lin(Proj::O), &self.self_attn.o_proj, &mixed)?;
            let weights = probs.mean(1)?.reshape((rows, k))?;
            let gathered = entries
                .index_select(&found.slot, 0)?
                .reshape((rows, k, d))?;
            let alpha = memory.alpha(&weights, &gathered, &x)?;
            y = (&y + (know - &y)?.broadcast_mul(&alpha)?)?;
        }
        Ok(y.reshape((b, t, d))?)
    }
}

/// Attention of queries `q` `(B, heads, T, hd)` over keys and values `(B, kv, S, hd)` (any
/// strides), each key/value head serving `heads / kv` consecutive query heads; `bias`
/// `(B, 1, T, S)` is added to the scaled scores. Returns the weights `(B, heads, T, S)` and the
/// output `(B, heads, T, hd)`. A group's query heads are stacked as the rows of one product with
/// their shared head, so keys and values are never repeated per query head: the repeat was a
/// copy of both per layer and pass, and a strided sum in the backward.
fn grouped_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    bias: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let (b, heads, t, hd) = q.dims4()?;
    let (_, kv, s, _) = k.dims4()?;
    let group = heads / kv;
    let q = q.reshape((b, kv, group * t, hd))?;
    let scores = gemm::matmul(&q, &k.t()?)?.reshape((b, heads, t, s))?;
    let probs = attention_softmax(&scores, scale, bias)?;
    let out = gemm::matmul(&probs.reshape((b, kv, group * t, s))?, v)?;
    Ok((probs, out.reshape((b, heads, t, hd))?))
}

/// The tokens a layer computes queries (and everything after the attention) for: every token,
/// or, in the final layer of a pass whose readout reads only columns from `from` on, those
/// columns alone. Keys and values always cover every token: the later tokens attend to them.
struct Queries<'r> {
    /// 0: every token.
    from: usize,
    /// Rotation of the queries' positions, when they are not every token's.
    own_rotary: Option<Rotary>,
    /// Rotation of every token's position (the keys').
    keys_rotary: &'r Rotary,
    /// `(B, 1, queries, keys)`.
    bias: Tensor,
}

impl<'r> Queries<'r> {
    fn all(rotary: &'r Rotary, bias: Tensor) -> Self {
        Self {
            from: 0,
            own_rotary: None,
            keys_rotary: rotary,
            bias,
        }
    }

    /// The final layer of a pass that reads columns from `from` on: the logits (or the
    /// layer's output) at a column depend on the layer's keys and values of every earlier
    /// token, but on its queries, attention output and FFN only at that column, so those run
    /// on the read columns alone (ASAM's adversarial ascent and every teacher-forced pass read
    /// a few answer tokens of ~55; ASAM's alignment reads one column).
    #[allow(clippy::too_many_arguments)]
    fn from_column(
        from: usize,
        layout: &TokenLayout,
        rotary: &'r Rotary,
        bias: &Tensor,
        shape: &Shape,
        dtype: candle_core::DType,
        device: &Device,
    ) -> Result<Self> {
        let (b, t) = (layout.batch(), layout.seq());
        let positions: Vec<u32> = (layout.positions().chunks(t.max(1)))
            .flat_map(|row| row[from..].iter().copied())
            .collect();
        let queries = Rotary::new(
            &positions,
            b,
            shape.head_dim,
            shape.rope_theta,
            dtype,
            device,
        )?;
        Ok(Self {
            from,
            own_rotary: Some(queries),
            keys_rotary: rotary,
            bias: bias.narrow(2, from, t - from)?.contiguous()?,
        })
    }

    /// Rotation of the queries' positions.
    fn rotary(&self) -> &Rotary {
        self.own_rotary.as_ref().unwrap_or(self.keys_rotary)
    }

    /// The query tokens' rows of `x` `(B, T, W)`.
    fn rows(&self, x: &Tensor) -> Result<Tensor> {
        if self.from == 0 {
            return Ok(x.clone());
        }
        let t = x.dim(1)?;
        Ok(x.narrow(1, self.from, t - self.from)?)
    }
}

/// Additive attention bias `(B, 1, T, past + T)`: 0 where a query may look, a large negative
/// number elsewhere (causal order and padding). Finite, so a query with no visible key (left
/// padding) gets a uniform distribution instead of NaN.
fn attention_bias(
    layout: &TokenLayout,
    past_valid: &[bool],
    past: usize,
    device: &Device,
) -> Result<Tensor> {
    let (b, t) = (layout.batch(), layout.seq());
    let total = past + t;
    let mut bias = vec![0f32; b * t * total];
    for row in 0..b {
        for i in 0..t {
            for j in 0..total {
                let valid = if j < past {
                    past_valid[row * past + j]
                } else {
                    layout.is_valid(row, j - past)
                };
                if !valid || j > past + i {
                    bias[(row * t + i) * total + j] = -1e9;
                }
            }
        }
    }
    // f32 whatever the model's dtype: −1e9 is −∞ in f16 (see `attention_softmax`).
    Ok(Tensor::from_vec(bias, (b, 1, t, total), device)?)
}

impl LlamaDecoder {
    /// Loads from `vb` positioned at `language_model`.
    pub fn load(vb: VarBuilder, cfg: &TextConfig, tied: bool) -> Result<Self> {
        let act = Activation::from_name(&cfg.hidden_act)
            .ok_or_else(|| unknown_act("text_config.hidden_act", &cfg.hidden_act))?;
        let d = cfg.hidden_size;
        let model = vb.pp("model");
        let embed_tokens = model.get_with_hints(
            (cfg.vocab_size, d),
            "embed_tokens.weight",
            Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        )?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::load(model.pp(format!("layers.{i}")), cfg))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(model.pp("norm"), d, cfg.rms_norm_eps)?;
        let lm_head = if tied {
            Linear::from_weights(embed_tokens.clone(), None)
        } else {
            Linear::load(vb.pp("lm_head"), d, cfg.vocab_size, false)?
        };
        let shape = Shape {
            heads: cfg.num_attention_heads,
            kv_heads: cfg.kv_heads(),
            head_dim: cfg.head_dim(),
            rope_theta: cfg.rope_theta,
            act,
        };
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            tied,
            shape,
        })
    }

    pub fn embed_tokens(&self) -> &Tensor {
        &self.embed_tokens
    }

    /// Token embeddings of `ids` `(B, T)` → `(B, T, hidden)`.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let d = self.embed_tokens.dim(1)?;
        Ok(self
            .embed_tokens
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, d))?)
    }

    /// Runs every layer on latents `x` `(B, T, hidden)` and returns the final-norm hidden states
    /// (or, when the pass says where to stop, that layer's output without the final norm).
    pub(crate) fn forward(
        &self,
        x: Tensor,
        pass: &mut Pass,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let layout = pass.layout;
        let (b, t) = (layout.batch(), layout.seq());
        let (dtype, device) = (x.dtype(), x.device().clone());
        let rotary = Rotary::new(
            layout.positions(),
            b,
            self.shape.head_dim,
            self.shape.rope_theta,
            dtype,
            &device,
        )?;
        let mut x = x;
        match cache {
            None => {
                let bias = attention_bias(layout, &[], 0, &device)?;
                let all = Queries::all(&rotary, bias.clone());
                let last = pass.final_layer(self.layers.len());
                for (l, layer) in self.layers.iter().enumerate().skip(pass.start.layer) {
                    x = if l == last && pass.read_from > 0 {
                        let read = Queries::from_column(
                            pass.read_from,
                            layout,
                            &rotary,
                            &bias,
                            &self.shape,
                            dtype,
                            &device,
                        )?;
                        layer.forward(l, x, &self.shape, &read, pass, None)?
                    } else {
                        layer.forward(l, x, &self.shape, &all, pass, None)?
                    };
                    if pass.stops_after(l) {
                        return Ok(x);
                    }
                }
            }
            Some(cache) => {
                if cache.layers.is_empty() {
                    cache.layers = vec![None; self.layers.len()];
                    cache.batch = b;
                } else if cache.batch != b {
                    return Err(ModelError::Prompt {
                        reason: format!("a KV cache of {} rows was continued with {b} rows", cache.batch),
                        help: "continue a cache only with the rows that filled it (TokenLayout::continuation)".into(),
                    });
                }
                let bias = attention_bias(layout, &cache.key_valid, cache.len, &device)?;
                let all = Queries::all(&rotary, bias);
                for (l, layer) in self.layers.iter().enumerate() {
                    x = layer.forward(l, x, &self.shape, &all, pass, cache.layers.get_mut(l))?;
                }
                let mut key_valid = Vec::with_capacity(b * (cache.len + t));
                for row in 0..b {
                    key_valid.extend_from_slice(
                        &cache.key_valid[row * cache.len..(row + 1) * cache.len],
                    );
                    key_valid.extend((0..t).map(|c| layout.is_valid(row, c)));
                }
                cache.key_valid = key_valid;
                cache.len += t;
            }
        }
        Ok(self.norm.forward(&x)?)
    }

    /// Vocabulary logits of hidden states `(…, hidden)`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.lm_head.forward(hidden)?)
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    pub(crate) fn linear(&self, site: LinearSite) -> Option<&Linear> {
        self.layers.get(site.layer).map(|l| l.linear(site.proj))
    }

    pub(crate) fn linear_mut(&mut self, site: LinearSite) -> Option<&mut Linear> {
        self.layers
            .get_mut(site.layer)
            .map(|l| l.linear_mut(site.proj))
    }

    /// Every tensor with its checkpoint name under `prefix` (`language_model`).
    pub fn tensors(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) {
        out.push((
            format!("{prefix}.model.embed_tokens.weight"),
            self.embed_tokens.clone(),
        ));
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("{prefix}.model.layers.{i}");
            out.push((
                format!("{p}.input_layernorm.weight"),
                layer.input_layernorm.weight().clone(),
            ));
            for proj in Proj::ALL {
                let block = if proj.block() == "attn" {
                    "self_attn"
                } else {
                    "mlp"
                };
                let lin = layer.linear(proj);
                out.push((
                    format!("{p}.{block}.{}.weight", proj.name()),
                    lin.weight().clone(),
                ));
                if let Some(bias) = lin.bias() {
                    out.push((format!("{p}.{block}.{}.bias", proj.name()), bias.clone()));
                }
            }
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                layer.post_attention_layernorm.weight().clone(),
            ));
        }
        out.push((
            format!("{prefix}.model.norm.weight"),
            self.norm.weight().clone(),
        ));
        if !self.tied {
            out.push((
                format!("{prefix}.lm_head.weight"),
                self.lm_head.weight().clone(),
            ));
        }
    }
}
