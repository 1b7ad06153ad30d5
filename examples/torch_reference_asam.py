"""A plain PyTorch implementation of the shipped recipe `recipes/asam.edit` ("ASAM + FT"), timed
per edit, to set beside `mkedsl bench recipes/asam.edit` (issue 11: mkedsl's time per edit
against a competent PyTorch implementation). The companion of examples/torch_reference.py (FT-L,
LoRA, ...), on the same weights (examples/model, loaded with transformers'
LlavaForConditionalGeneration) and the same E-VQA cases; ids come from `mkedsl infer --json`
(image tokens expanded as transformers expects), pixels from CLIPImageProcessor.

What it implements (recipes/asam.edit with stdlib/asam.edit, as src/exec executes them):
  - FT of the last layer's mlp.down_proj.weight, Adam(lr 1.5e-3, betas 0.9/0.999, eps 1e-8),
    70 steps, the weight restored after each case (single editing);
  - at every step, LAR (`lar(budget: 1e-3, count: 4, scale: absolute)`, i.e. `adversarial(
    [embed.vision, embed.text], budget, count: 4, steps: 1, init: random, norm: l2)`,
    src/exec/methods/asam.rs), regenerated against the current weight: the joint latent z is the
    LM's input embeddings of the edit sequence, and only its input columns (the 36 projected image
    features and every prompt text token, BOS included; never the teacher-forced target) are
    perturbed. For each of the 4 variants, δ starts uniform in ONE ℓ2 ball of radius ε = 1e-3 over
    all of that variant's perturbed coordinates (Gaussian direction, radius ε·U^(1/k)); one ascent
    step on the sum over variants of each variant's mean target NLL: δ ← δ + ε·g/(‖g‖₂ + 1e-12)
    (g masked to the perturbed columns, ‖g‖ per variant), then δ projected back onto the ball
    (shrunk to radius ε when outside). The variants z + δ are then detached;
  - the loss `nll(target) + kl_to_original(over: preserve(text: 8, vqa: 8)) + 10 ·
    rank_align(hidden(layer(-1).output, at: last_prompt), over: variants, tau: 4, anchor:
    detached)` (src/exec/train.rs, src/exec/losses.rs):
      nll: mean NLL of the target tokens of the clean edit sequence (not of the variants);
      kl: Σ_v p_orig (log p_orig − log p_cur) of the next-token distributions at EVERY valid
          position of the 16 preserved sequences (prompt + " " + answer, image positions
          included), averaged over all those positions; p_orig from the unedited model, computed
          once per run (mkedsl computes it once per run too, in its prepare stage; with single
          editing and restore it is the same for every edit). Its time is printed as `prepare`;
      rank_align: h = the output of the last decoder layer (the residual stream, before the
          final RMSNorm) at the last prompt token, for the clean row and the 4 variants (5 × 128);
          rows ℓ2-normalised (+1e-12), the clean row detached; σ = singular values (descending);
          loss = logsumexp(σ/τ) − σ₁/τ, τ = 4; weight β = 10.

Where this side differs from mkedsl, or mkedsl's semantics left a choice:
  - The target is the answer's tokens alone (` {alt}`, no `</s>`): mkedsl tokenises the target
    alone without special tokens (src/exec/input.rs, src/eval/probe.rs), so `nll(target)`, the
    ascent objective and Rel all read one token per one-word answer, as in
    examples/torch_reference.py.
  - The preserved prompts: mkedsl draws `preserve(text: 8, vqa: 8)` from the embedded world's
    preserve pool (src/world/pools.rs, facts of `Preserve` subjects), which it does not export.
    Here, 8 text samples are the `loc`/`loc_ans` fields and 8 image samples the
    `m_loc_q`/`m_loc_a`/`m_loc` fields of the LAST 8 records of examples/data/evqa.json (records
    never edited unless --cases > 292): questions of the same families and lengths, but not the
    same facts. Each sample is `USER: [<image>\\n]{q} ASSISTANT: {a}` with no `</s>`, as mkedsl's.
    mkedsl pads all 16 into one batch (sorted by length); here text and image samples are two
    batches (right padding, attention mask), which changes nothing but the padding work.
  - Randomness: torch's generator (seeded per case) instead of mkedsl's streams, so the random
    starts differ draw for draw (same distribution).
  - Work per step, the choices of a straightforward implementation: the clean embeddings (vision
    tower + projector + token embeddings) are computed once per edit, inside the timed
    optimisation (the vision tower is frozen and LAR perturbs its output; mkedsl also embeds once
    per edit), and the preserved samples' embeddings once per run with their reference
    distributions. Every step then runs (a) the LM forward and backward to the input on the 4
    variants (the ascent), (b) ONE LM forward on the clean row and the 4 variants, the nll read
    from row 0's logits and rank_align from a hook on the last decoder layer (mkedsl runs the
    clean nll row in a pass of its own and the 5 rank_align rows only up to the last layer's
    output), (c) the LM forward on the 16 preserved samples, then one backward (it reaches only
    the last layer) and the Adam step. Every forward runs every decoder layer, as in mkedsl for
    this recipe: its frozen prefix (src/plan/prefix.rs) is off for a loss that reads variants.

Evaluation, per case, as in examples/torch_reference.py: the five probes (edit, rephrase,
rephrased image, text locality, image locality), each one teacher-forced pass (vision tower
included) before and one after the edit; Rel is the share of answer tokens whose argmax is the
answer (EasyEdit's token accuracy). mkedsl's evaluation also decodes greedy generations.

Run from the repository root, with torch, transformers and Pillow installed (CI has no PyTorch):
    MKEDSL=target/release/mkedsl python examples/torch_reference_asam.py --cases 4 --threads 1
It prints prepare s (once), optimisation s/edit, evaluation s/case and Rel; `mkedsl bench
recipes/asam.edit --cases 4 --threads 1` gives mkedsl's figures for the same cases.
"""
import json
import os
import time

import torch
import torch.nn.functional as F

from torch_reference import DATA, Example, start

# recipes/asam.edit and stdlib/asam.edit.
STEPS = 70
LR = 1.5e-3
BUDGET = 1e-3  # ε, one ℓ2 ball over each variant's perturbed coordinates (scale: absolute)
COUNT = 4  # LAR variants
TAU = 4.0
BETA = 10.0
PRESERVE_TEXT = 8
PRESERVE_VQA = 8


def preserved(tok, processor, n_cases):
    """8 text and 8 image sequences from the last records of the data file (never edited)."""
    rows = json.load(open(DATA))
    first = len(rows) - max(PRESERVE_TEXT, PRESERVE_VQA)
    if first < n_cases:
        raise SystemExit(f"--cases {n_cases} would edit the records the preserved samples come from")
    img = lambda p: os.path.join(os.path.dirname(DATA), p)
    text = [Example(tok, processor, r["loc"], r["loc_ans"], None) for r in rows[first:][:PRESERVE_TEXT]]
    vqa = [Example(tok, processor, r["m_loc_q"], r["m_loc_a"], img(r["m_loc"]))
           for r in rows[first:][:PRESERVE_VQA]]
    return [text, vqa]


class Lm:
    """The LLaVA model's language model driven from input embeddings, with the last decoder
    layer's output (the residual stream before the final norm) captured by a hook."""

    def __init__(self, model):
        self.model = model
        self.lm = model.model.language_model
        self.head = model.lm_head
        self.last = None
        self.lm.layers[-1].register_forward_hook(self._capture)
        self._embeds = None
        self.lm.register_forward_pre_hook(self._embeds_hook, with_kwargs=True)

    def _capture(self, module, args, out):
        self.last = out[0] if isinstance(out, tuple) else out

    def _embeds_hook(self, module, args, kwargs):
        self._embeds = kwargs.get("inputs_embeds")

    def embed(self, seq):
        """Input embeddings (1, T, d): token embeddings with the projected image features in the
        image columns, exactly what LlavaModel hands its language model (caught by a pre-hook;
        the language model then runs once more, one 1-row pass per call)."""
        with torch.no_grad():
            kwargs = {"input_ids": seq.ids}
            if seq.pixels is not None:
                kwargs["pixel_values"] = seq.pixels
            self.model.model(**kwargs)
        return self._embeds.detach()

    def hidden(self, embeds, attention_mask=None):
        """The final (normed) hidden states; the last layer's output lands in `self.last`."""
        return self.lm(inputs_embeds=embeds, attention_mask=attention_mask,
                       use_cache=False).last_hidden_state


def pad_batch(lm, seqs):
    """Right-padded embeddings, attention mask and the mask of valid positions."""
    embeds = [lm.embed(s)[0] for s in seqs]
    t = max(e.shape[0] for e in embeds)
    batch = torch.zeros(len(seqs), t, embeds[0].shape[1])
    mask = torch.zeros(len(seqs), t, dtype=torch.long)
    for i, e in enumerate(embeds):
        batch[i, :e.shape[0]] = e
        mask[i, :e.shape[0]] = 1
    return batch, mask


def kl_reference(lm, batches):
    """Per preserve batch: embeddings, attention mask, valid positions, log p of the unedited model."""
    out = []
    with torch.no_grad():
        for embeds, mask in batches:
            valid = mask.bool()
            logits = lm.head(lm.hidden(embeds, mask))[valid]
            out.append((embeds, mask, valid, F.log_softmax(logits, -1)))
    return out


def kl_term(lm, reference):
    """KL(p_orig ‖ p_cur) summed over the vocabulary, averaged over every valid position."""
    total, rows = 0.0, 0
    for embeds, mask, valid, log_p in reference:
        log_q = F.log_softmax(lm.head(lm.hidden(embeds, mask)[valid]), -1)
        total = total + (log_p.exp() * (log_p - log_q)).sum()
        rows += log_p.shape[0]
    return total / rows


def lar(lm, z, cols, answer, start, gen):
    """LAR: COUNT variants z + δ, one ℓ2 ball of radius ε per variant over the perturbed columns,
    one projected ascent step on the target NLL from a uniform start in the ball."""
    n, (_, t, d) = COUNT, z.shape
    k = int(cols.sum()) * d  # perturbed coordinates of one variant
    mask = cols.view(1, t, 1).float()
    # Uniform in the ball: a Gaussian direction, radius ε·U^(1/k).
    delta = torch.randn(n, t, d, generator=gen) * mask
    radius = BUDGET * torch.rand(n, 1, 1, generator=gen) ** (1.0 / k)
    delta = delta / delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(n, 1, 1) * radius
    delta.requires_grad_(True)
    zs = z.expand(n, t, d) + delta * mask
    logits = lm.head(lm.hidden(zs)[:, start - 1:start - 1 + len(answer)])
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), answer.repeat(n),
                          reduction="none").view(n, -1).mean(1).sum()
    (g,) = torch.autograd.grad(nll, delta)
    g = g * mask
    with torch.no_grad():
        direction = g / (g.flatten(1).norm(dim=1).view(n, 1, 1) + 1e-12)
        delta = delta + BUDGET * direction  # step ε / steps, steps = 1
        norms = delta.flatten(1).norm(dim=1).view(n, 1, 1)
        delta = delta * (BUDGET / norms.clamp_min(BUDGET))
        return z + delta * mask


def rank_align(h):
    """ASAM Eq. 10-11: −log softmax(σ/τ)₁ of the row-normalised features, the clean row detached."""
    unit = h / (h.norm(dim=1, keepdim=True) + 1e-12)
    unit = torch.cat([unit[:1].detach(), unit[1:]])
    logits = torch.linalg.svdvals(unit) / TAU
    return torch.logsumexp(logits, 0) - logits[0]


def edit(lm, case, reference, steps=STEPS):
    """One ASAM + FT edit; returns the function that restores the weight."""
    w = lm.lm.layers[-1].mlp.down_proj.weight
    saved = w.detach().clone()
    w.requires_grad_(True)
    seq = case["edit"]
    z = lm.embed(seq)  # (1, T, d): the clean joint latent
    t = z.shape[1]
    cols = torch.zeros(t, dtype=torch.bool)
    cols[:seq.start] = True  # image and prompt text columns, never the target
    answer, start = seq.answer, seq.start
    gen = torch.Generator().manual_seed(case["index"])
    opt = torch.optim.Adam([w], lr=LR)
    for _ in range(steps):
        variants = lar(lm, z, cols, answer, start, gen)
        rows = torch.cat([z, variants])  # (1 + COUNT, T, d), row 0 the clean input
        final = lm.hidden(rows)
        logits = lm.head(final[0, start - 1:start - 1 + len(answer)])
        nll = F.cross_entropy(logits, answer)
        align = rank_align(lm.last[:, start - 1])
        loss = nll + kl_term(lm, reference) + BETA * align
        opt.zero_grad()
        loss.backward()
        opt.step()

    def restore():
        with torch.no_grad():
            w.copy_(saved)
        w.requires_grad_(False)
        w.grad = None
    return restore


def run(lm, data, reference):
    opt_s, eval_s, rel = 0.0, 0.0, []
    for case in data:
        t = time.perf_counter()
        with torch.no_grad():
            [p.accuracy(lm.model) for p in case["probes"]]  # the pre-edit pass
        eval_s += time.perf_counter() - t
        t = time.perf_counter()
        restore = edit(lm, case, reference)
        opt_s += time.perf_counter() - t
        t = time.perf_counter()
        scores = [p.accuracy(lm.model) for p in case["probes"]]
        eval_s += time.perf_counter() - t
        rel.append(scores[0])
        restore()
    n = len(data)
    return opt_s / n, eval_s / n, 100 * sum(rel) / n


def main():
    args, model, tok, processor, data = start(default_cases=4)
    lm = Lm(model)
    keep = preserved(tok, processor, args.cases)
    t = time.perf_counter()
    reference = kl_reference(lm, [pad_batch(lm, seqs) for seqs in keep])
    prepare_s = time.perf_counter() - t
    edit(lm, data[0], reference, steps=5)()  # warm-up
    print(f"torch {torch.__version__} · {args.threads} thread(s) · {args.cases} cases of {DATA}")
    print(f"{'recipe':<10}{'prepare s':>11}{'optimise s/edit':>17}{'evaluate s/case':>18}{'Rel %':>8}")
    o, e, r = run(lm, data, reference)
    print(f"{'ASAM + FT':<10}{prepare_s:>11.3f}{o:>17.3f}{e:>18.3f}{r:>8.1f}")


if __name__ == "__main__":
    main()
