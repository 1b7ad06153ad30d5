"""A plain PyTorch implementation of the shipped recipe `recipes/unike.edit` (UniKE), timed per
edit, to set beside `mkedsl bench recipes/unike.edit` (issue 11: mkedsl's time per edit against a
competent PyTorch implementation). The companion of examples/torch_reference.py (FT-L, LoRA, ...)
and examples/torch_reference_asam.py (ASAM), on the same weights (examples/model, loaded with
transformers' LlavaForConditionalGeneration) and the same E-VQA cases; ids come from `mkedsl infer
--json` (image tokens expanded as transformers expects), pixels from CLIPImageProcessor, the
prompt is LLaVA-1.5's `USER: <image>\\n{q} ASSISTANT:` and the target the answer's tokens alone
(` {alt}`, no `</s>`: src/exec/input.rs).

What it implements (recipes/unike.edit with stdlib/unike.edit, as src/exec/methods/unike/mod.rs,
src/exec/methods/unike/numerics.rs, src/model/memory.rs, src/model/llama.rs (`read_memories`)
and src/model/adapters.rs (`neuron_output`) execute them):

Preparation, once per model (NOT part of the time per edit, on either side), read from mkedsl's
prepare cache (examples/.mkedsl-cache, safetensors + JSON; run `mkedsl run recipes/unike.edit
--limit 1` once first):
  - the in-context memory (`incontext_memory(hallucinations(count: 2000), at: layers(-4..).input)`,
    cache kind `memory`): per edit layer l in 2..5, h_sem, h_pos, h_neg `(2000, 128)` of 2,000
    hallucination triplets, read at the layer's input (the residual stream before
    input_layernorm); its centre c_l = mean h_sem; retrieval keys = unit rows of h_sem − c_l
    (x / (‖x‖ + 1e-12)), attended states = h_pos;
  - the contrastive encoders (`contrastive_encoders(memory, hidden: 64, depth: 2, ...)`, cache
    kind `encoders`): per layer a truthfulness MLP 128 → 64 → 64 and a semantic MLP 128 → 64 →
    128 (linear, exact GELU, linear);
  - ζ_l = mean Enc_truth(h_pos − c_l) − mean Enc_truth(h_neg − c_l) (`truth_direction`, `(64,)`,
    hoisted into mkedsl's prepare stage too).
  The script prints the time of reading and deriving these as `prepare s`; mkedsl's `bench`
  (cache off by default) prints the time of computing them (triplet passes + encoder training),
  so that column is not comparable.

Latent in-context editing (`gated_icl(layers(-4..).attn.output, memory, top_k: 40, ...)`, Eq. 2
with Eq. 7 as recipes/unike.edit reads them), at the attention output of layers 2..5, at every
token of every forward pass after the preparation (training steps and post-edit probes; the
pre-edit probes run the original model, as mkedsl's pre-edit outputs come from the model as
given, src/eval/editor.rs). Per token, with x its layer input (caught by a pre-hook on
input_layernorm) and q its query before rotary positions (a hook on q_proj):
  - retrieval (no gradient): the top-40 memory entries by cos(x − c, h_sem − c) (torch.topk);
  - h_know: the retrieved h_pos through the layer's own input_layernorm, k_proj and v_proj (no
    rotary), the token's own query attends over the 40 of them per head (softmax of q·kᵀ/√hd,
    head h reading KV head h // 2 as in GQA's repeat_kv), o_proj of the result. The norm and
    the projections are frozen and the memory is fixed during an edit, so a straightforward
    implementation projects every entry once per edit (after `remember`, counted in `spaces`,
    2,001 × 128 → 2 × 64 per layer) and gathers the retrieved rows at every step, batched over
    (KV head, token); mkedsl projects, at every step, each distinct entry that the step's
    tokens retrieved (src/model/llama.rs `read_memories`) and gathers those. Same numbers
    either way;
  - the gate α = clamp(cos(Enc_sem(k̄ − c), x − c), 0, 1), k̄ the retrieved h_pos mixed by the
    head-averaged attention weights;
  - the attention output y ← y + α·(h_know − y).
  Gradients flow as in mkedsl: through q and x (which depend on the extra neurons of earlier edit
  layers), not through the retrieval's choice.

Per edit, in mkedsl's order, the per-edit work other than training timed as `spaces s/edit`
(mkedsl's `spaces` column counts every per-edit step that is not `train`, and embedding the edit
case; src/exec/executor.rs, src/exec/editor.rs), the 50 steps as `optimise s/edit`:
  - `remember(memory)`: the edit sequence (prompt + answer) runs under no_grad with the ICL off,
    the pass stopped at layer 5's input (a pre-hook raises); at each layer 2..5 the layer input
    at the last prompt token joins the keys (as unit(h − c)) and at the last token the attended
    states: 2,001 entries per layer for this edit; then the entries' key/value projections
    (above);
  - `regulated_neurons(layers(-4..), count: 10, beta: 0.1)`: per layer 2..5, 10 extra FFN
    key-value pairs added to the MLP output: act(h·Kᵀ + b)·(V + β·W_ζ ζ)  (act = the model's
    SiLU, h = the MLP input, i.e. post_attention_layernorm's output), K `(10, 128)` ~ N(0, 0.02²),
    b = 0, V = 0 `(10, 128)`, W_ζ = 0 `(128, 64)`, β = 0.1. K is drawn from mkedsl's own stream
    (SplitMix64 `derive(0, "extra-neurons", (case + 1) << 32 | 5 << 16 | layer)`, Box-Muller,
    src/exec/rng.rs and src/world/rng.rs; 5 is the step's id in `mkedsl plan`), so both sides
    start from the same keys and the per-case results can be compared; the draws are made before
    the timed loop (pure Python; torch.randn would cost nothing);
  - `train neurons for 50 steps with adam(lr: 3e-3)` on `nll(target)`: K, b, V and W_ζ of the
    four layers (16 tensors, 18,442 values), torch.optim.Adam(lr 3e-3, betas 0.9/0.999,
    eps 1e-8, the same update as src/exec/optim.rs), the mean NLL of the answer tokens, the ICL
    active (with the edit remembered). Every step runs the whole model on the edit sequence,
    vision tower included, as EasyEdit's editors (and examples/torch_reference.py) do; the frozen
    weights do not require grad, so backward stops where nothing trainable is upstream.
  After the case the neurons are removed and the memory restored (single editing).

Where this side differs from mkedsl:
  - mkedsl runs layers 0-1 once per edit (its frozen prefix, src/plan/prefix.rs: `mkedsl plan`
    says "layers 0–1 once per edit") and every step from layer 2 on; here every step runs the
    whole model, vision tower and layers 0-1 included (the rule of these reference scripts).
  - Ties in retrieval: mkedsl breaks ties to the lower index, torch.topk does not promise one;
    with f32 cosines of distinct states ties do not occur in practice.
  - Evaluation, per case, as in examples/torch_reference.py: the five probes (edit, rephrase,
    rephrased image, text locality, image locality), each one teacher-forced pass one probe at a
    time (vision tower included) before and after the edit. Rel/T-Gen/M-Gen = the share of answer
    tokens whose argmax is the answer (EasyEdit's token accuracy); T-Loc/M-Loc = top-1 agreement
    of the post-edit with the pre-edit (original) model at the positions that predict loc_ans /
    m_loc_a (mkedsl's token row, src/eval/metrics.rs). mkedsl's evaluation also decodes greedy
    generations (its exact-match rows), batches the probes and caches the pre-edit outputs.
    The script also prints EasyEdit's locality (top-1 text / top-10 image agreement at EVERY
    position, image tokens included: mkedsl's `EasyEdit loc` row), a finer check of the latent
    ICL than the one-token answers.
  - One untimed 5-step edit of the first case warms up the kernels before the timed run.

Checked against mkedsl (2026-12-04, first 4 E-VQA cases, one thread): every per-case figure
agrees exactly with `mkedsl run recipes/unike.edit --limit 4 --json F`: Rel, T-Gen, M-Gen 100 on
each case, T-Loc 100, M-Loc 0 / 0 / 100 / 100, EasyEdit T-Loc 100 / 93.75 / 100 / 100 and
EasyEdit M-Loc 28.43 / 33.27 / 34.58 / 26.04 %.

Run from the repository root, with torch, transformers, safetensors and Pillow installed (CI has
no PyTorch), after `mkedsl run recipes/unike.edit --limit 1` has filled the prepare cache:
    MKEDSL=target/release/mkedsl python examples/torch_reference_unike.py --cases 4 --threads 1
It prints prepare s (once, cache read), spaces s/edit, optimisation s/edit, evaluation s/case and
the five token metrics, then one line per case. `mkedsl bench recipes/unike.edit --cases 4
--threads 1` gives mkedsl's figures for the same cases (`mkedsl run recipes/unike.edit --limit 4
--json F` its per-case rows).
"""
import math
import time

import torch
import torch.nn.functional as F

from torch_reference import DATA, StopForward, cached, start

# recipes/unike.edit and stdlib/unike.edit.
LAYERS = (2, 3, 4, 5)  # layers(-4..) of the 6-layer model
TOP_K = 40
COUNT = 10  # extra neurons per layer
BETA = 0.1
STEPS = 50
LR = 3e-3
NEURON_STEP = 5  # the extra_neurons step's id in `mkedsl plan recipes/unike.edit`
SEED = 0
MEMORY = ("incontext_memory(at: layers(2..6).input; triplets: hallucinations(count: 2000); "
          f"seed: {SEED})")
ENCODERS = "hidden: 64; depth: 2; lr: 0.0001; steps: 300; batch: 256;"


def unit_rows(x):
    """x with each row scaled to unit length, as src/model/memory.rs (‖x‖ + 1e-12)."""
    return x / (x.norm(dim=-1, keepdim=True) + 1e-12)


def mlp(layers, x):
    """src/model/nn/mlp.rs: linear layers with exact GELU between them (none after the last)."""
    for i, (w, b) in enumerate(layers):
        x = F.linear(x, w, b)
        if i + 1 < len(layers):
            x = F.gelu(x)
    return x


def encoder(tensors, name):
    layers = []
    while f"{name}.{len(layers)}.w" in tensors:
        i = len(layers)
        layers.append((tensors[f"{name}.{i}.w"].float(), tensors[f"{name}.{i}.b"].float()))
    return layers


# mkedsl's SplitMix64 streams (src/world/rng.rs, src/exec/rng.rs), for the extra neurons' keys.
MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def mkedsl_normals(seed, label, index, n):
    h = 0xCBF29CE484222325
    for b in label.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK
    a = mix64((seed + GAMMA) & MASK)
    b = mix64(a ^ h)
    state = mix64(b ^ mix64((index + GAMMA) & MASK))
    out = []
    for _ in range(n):
        draws = []
        for _ in range(2):
            state = (state + GAMMA) & MASK
            draws.append((mix64(state) >> 11) / float(1 << 53))
        u1, u2 = 1.0 - draws[0], draws[1]
        out.append(math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2))
    return out


def neuron_keys(case_index, hidden):
    """Per layer, the extra neurons' keys K `(COUNT, hidden)` = 0.02·N(0, 1), mkedsl's stream."""
    keys = {}
    for l in LAYERS:
        index = (case_index + 1) << 32 | NEURON_STEP << 16 | l
        draws = mkedsl_normals(SEED, "extra-neurons", index, COUNT * hidden)
        keys[l] = (0.02 * torch.tensor(draws, dtype=torch.float64)).float().view(COUNT, hidden)
    return keys


class UniKE:
    """The memory, encoders and ζ of every edit layer, and the hooks that apply latent in-context
    editing (attention output) and the extra neurons (MLP output) at layers 2..5."""

    def __init__(self, model):
        self.model = model
        self.lm = model.model.language_model
        cfg = self.lm.config
        self.heads, self.kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.hd = cfg.hidden_size // cfg.num_attention_heads
        memory = cached("memory", MEMORY)
        encoders = cached("encoders", MEMORY, ENCODERS)
        self.centre, self.keys, self.values, self.semantic, self.zeta = {}, {}, {}, {}, {}
        for l in LAYERS:
            sem, pos, neg = (memory[f"layer.{l}.{k}"].float() for k in ("sem", "pos", "neg"))
            c = sem.mean(0)
            self.centre[l] = c
            self.keys[l] = unit_rows(sem - c)
            self.values[l] = pos
            self.semantic[l] = encoder(encoders, f"layer.{l}.semantic")
            truth = encoder(encoders, f"layer.{l}.truth")
            self.zeta[l] = mlp(truth, pos - c).mean(0) - mlp(truth, neg - c).mean(0)
        self.icl = False  # latent ICL on (after the preparation) or off (the original model)
        self.neurons = None  # per layer (K, b, V, W_ζ) while an edit is on
        self.stop_at = None  # a layer whose input ends the pass (remember)
        self.project_memory()
        self.x, self.q = {}, {}
        for l in LAYERS:
            layer = self.lm.layers[l]
            layer.input_layernorm.register_forward_pre_hook(self._layer_input(l))
            layer.self_attn.q_proj.register_forward_hook(self._query(l))
            layer.self_attn.register_forward_hook(self._read_memory(l))
            layer.mlp.register_forward_hook(self._extra_neurons(l))

    def _layer_input(self, l):
        def hook(module, args):
            self.x[l] = args[0]
            if self.stop_at == l:
                raise StopForward
        return hook

    def _query(self, l):
        def hook(module, args, out):
            self.q[l] = out
        return hook

    def _read_memory(self, l):
        """UniKE Eq. 2 with Eq. 7 on this layer's attention output (src/model/llama.rs)."""
        def hook(module, args, out):
            if not self.icl:
                return None
            y, weights = out
            b, t, d = y.shape
            rows, k = b * t, min(TOP_K, self.keys[l].shape[0])
            heads, kv, hd = self.heads, self.kv, self.hd
            x = self.x[l].reshape(rows, d)
            c = self.centre[l]
            with torch.no_grad():
                flat = (unit_rows(x - c) @ self.keys[l].t()).topk(k, dim=1).indices.reshape(-1)
            # The retrieved h_pos through the layer's input_layernorm, k_proj and v_proj: frozen,
            # so projected once per edit (`project_memory`, kept as (kv, N, hd)) and gathered
            # here, batched over (KV head, token) so no operand needs a copy.
            keys = self.mem_k[l].index_select(1, flat).view(kv, rows, k, hd)
            values = self.mem_v[l].index_select(1, flat).view(kv, rows, k, hd)
            # Head h reads KV head h // (heads / kv), as repeat_kv; the query before rotary.
            query = self.q[l].view(rows, kv, heads // kv, hd).transpose(0, 1)
            probs = torch.softmax(query @ keys.transpose(-1, -2) / math.sqrt(hd), dim=-1)
            mixed = (probs @ values).transpose(0, 1).reshape(rows, heads * hd)
            attn = self.lm.layers[l].self_attn
            know = F.linear(mixed, attn.o_proj.weight, attn.o_proj.bias)
            # The gate reads k̄: the retrieved h_pos mixed by the head-averaged weights.
            gathered = self.values[l].index_select(0, flat).view(rows, k, d)
            w = probs.mean((0, 2)).unsqueeze(1)  # (rows, 1, k)
            known = mlp(self.semantic[l], (w @ gathered).squeeze(1) - c)
            alpha = (unit_rows(known) * unit_rows(x - c)).sum(-1, keepdim=True).clamp(0.0, 1.0)
            y = y.reshape(rows, d)
            y = y + (know - y) * alpha
            return y.view(b, t, d), weights
        return hook

    def _extra_neurons(self, l):
        """UniKE Eq. 3 with Eq. 6: FFN(h) + act(h·Kᵀ + b)·(V + β·W_ζ ζ) (src/model/adapters.rs)."""
        def hook(module, args, out):
            if self.neurons is None:
                return None
            k, b, v, w_zeta = self.neurons[l]
            values = v + BETA * (w_zeta @ self.zeta[l])
            return out + module.act_fn(F.linear(args[0], k, b)) @ values
        return hook

    def remember(self, example):
        """`remember(memory)`: the edit case's layer inputs at the last prompt token (h_sem) and
        the last token (h_pos) join each layer's memory, read with the ICL off. Returns what
        restores the memory."""
        saved = (dict(self.keys), dict(self.values), dict(self.mem_k), dict(self.mem_v))
        icl, self.icl, self.stop_at = self.icl, False, LAYERS[-1]
        try:
            with torch.no_grad():
                self.model(input_ids=example.ids, pixel_values=example.pixels)
        except StopForward:
            pass
        finally:
            self.icl, self.stop_at = icl, None
        last_prompt, last = example.start - 1, example.ids.shape[1] - 1
        for l in LAYERS:
            x = self.x[l][0].detach()
            c = self.centre[l]
            sem = x[last_prompt:last_prompt + 1]
            self.keys[l] = torch.cat([self.keys[l], unit_rows(sem - c)])
            self.values[l] = torch.cat([self.values[l], x[last:last + 1]])
        self.project_memory()

        def restore():
            self.keys, self.values, self.mem_k, self.mem_v = saved
        return restore

    def project_memory(self):
        """Every memory entry's h_pos through each layer's input_layernorm, k_proj and v_proj
        (frozen: the same at every step), what h_know's attention reads after retrieval."""
        self.mem_k, self.mem_v = {}, {}
        with torch.no_grad():
            for l in LAYERS:
                layer = self.lm.layers[l]
                normed = layer.input_layernorm.forward(self.values[l])
                attn = layer.self_attn
                for store, proj in ((self.mem_k, attn.k_proj), (self.mem_v, attn.v_proj)):
                    z = F.linear(normed, proj.weight, proj.bias)  # (N, kv·hd)
                    store[l] = z.view(-1, self.kv, self.hd).transpose(0, 1).contiguous()

    def attach_neurons(self, keys):
        """Fresh extra neurons per layer: K given, b = 0, V = 0, W_ζ = 0; their parameters."""
        d = self.lm.config.hidden_size
        self.neurons = {}
        for l in LAYERS:
            self.neurons[l] = (
                keys[l].clone().requires_grad_(True),
                torch.zeros(COUNT, requires_grad=True),
                torch.zeros(COUNT, d, requires_grad=True),
                torch.zeros(d, self.zeta[l].shape[0], requires_grad=True),
            )
        return [p for l in LAYERS for p in self.neurons[l]]


def probe_scores(model, probes):
    """Per probe: the argmax at the answer positions, the token accuracy, and the top-10 ids at
    every position (for EasyEdit's locality over all positions)."""
    with torch.no_grad():
        out = []
        for p in probes:
            kwargs = {"input_ids": p.ids}
            if p.pixels is not None:
                kwargs["pixel_values"] = p.pixels
            logits = model(**kwargs).logits[0]
            top = logits[p.start - 1:p.start - 1 + len(p.answer)].argmax(-1)
            out.append((top, (top == p.answer).float().mean().item(), logits.topk(10).indices))
        return out


def run(unike, data, keys, steps=STEPS):
    model = unike.model
    spaces_s, opt_s, eval_s, rows = 0.0, 0.0, 0.0, []
    for case in data:
        t = time.perf_counter()
        unike.icl = False  # the original model's outputs (mkedsl: the model as given)
        pre = probe_scores(model, case["probes"])
        unike.icl = True
        eval_s += time.perf_counter() - t
        edit = case["edit"]
        t = time.perf_counter()
        restore = unike.remember(edit)
        params = unike.attach_neurons(keys[case["index"]])
        spaces_s += time.perf_counter() - t
        t = time.perf_counter()
        opt = torch.optim.Adam(params, lr=LR, betas=(0.9, 0.999), eps=1e-8)
        for _ in range(steps):
            opt.zero_grad()
            edit.loss(model).backward()
            opt.step()
        opt_s += time.perf_counter() - t
        t = time.perf_counter()
        post = probe_scores(model, case["probes"])
        eval_s += time.perf_counter() - t
        unike.neurons = None
        restore()
        rel, t_gen, m_gen = (post[i][1] for i in range(3))
        t_loc, m_loc = ((post[i][0] == pre[i][0]).float().mean().item() for i in (3, 4))
        # EasyEdit's locality: every position, image tokens included; top-1 text, top-10 image.
        ee_t = (post[3][2][:, :1] == pre[3][2][:, :1]).float().mean().item()
        ee_m = (post[4][2] == pre[4][2]).float().mean().item()
        rows.append({"case": case["index"], "pre_rel": pre[0][1], "rel": rel, "t_gen": t_gen,
                     "m_gen": m_gen, "t_loc": t_loc, "m_loc": m_loc, "ee_t_loc": ee_t,
                     "ee_m_loc": ee_m})
    n = len(data)
    return spaces_s / n, opt_s / n, eval_s / n, rows


def main():
    args, model, _, _, data = start(default_cases=4)
    hidden = model.config.text_config.hidden_size
    keys = {c["index"]: neuron_keys(c["index"], hidden) for c in data}
    t = time.perf_counter()
    unike = UniKE(model)
    prepare_s = time.perf_counter() - t
    run(unike, data[:1], keys, steps=5)  # warm-up
    spaces, opt, ev, rows = run(unike, data, keys)
    mean = lambda k: 100 * sum(r[k] for r in rows) / len(rows)
    print(f"torch {torch.__version__} · {args.threads} thread(s) · {args.cases} cases of {DATA}")
    print(f"{'recipe':<8}{'prepare s':>11}{'spaces s/edit':>15}{'optimise s/edit':>17}"
          f"{'evaluate s/case':>17}{'Rel %':>8}{'T-Gen':>7}{'M-Gen':>7}{'T-Loc':>7}{'M-Loc':>7}")
    print(f"{'UniKE':<8}{prepare_s:>11.3f}{spaces:>15.3f}{opt:>17.3f}{ev:>17.3f}{mean('rel'):>8.1f}"
          f"{mean('t_gen'):>7.1f}{mean('m_gen'):>7.1f}{mean('t_loc'):>7.1f}{mean('m_loc'):>7.1f}")
    print(f"pre-edit Rel {mean('pre_rel'):.1f} %; EasyEdit loc (every position, top-1 / top-10): "
          f"T-Loc {mean('ee_t_loc'):.1f}, M-Loc {mean('ee_m_loc'):.1f}; prepare: memory and "
          "encoders read from mkedsl's cache, centre and ζ derived")
    for r in rows:
        print(f"  case {r['case']}: Rel {100 * r['rel']:.1f}  T-Gen {100 * r['t_gen']:.1f}  "
              f"M-Gen {100 * r['m_gen']:.1f}  T-Loc {100 * r['t_loc']:.1f}  "
              f"M-Loc {100 * r['m_loc']:.1f}  EasyEdit T-Loc {100 * r['ee_t_loc']:.2f}  "
              f"M-Loc {100 * r['ee_m_loc']:.2f}")


if __name__ == "__main__":
    main()
