"""A plain PyTorch implementation of the shipped hybrid recipe `recipes/elora_asam.edit`
("ELoRA + ASAM"), timed per edit, to set beside `mkedsl bench recipes/elora_asam.edit --cases 4
--threads 1` (issue 11: mkedsl's time per edit against a competent PyTorch implementation of
every shipped recipe). The companion of examples/torch_reference.py (ELoRA, FT-L, ...) and
examples/torch_reference_asam.py (ASAM + FT), whose helpers it imports unchanged: the same
weights (examples/model, loaded with transformers' LlavaForConditionalGeneration), the same
E-VQA cases (the first --cases records of examples/data/evqa.json), ids from `mkedsl infer
--json` (image tokens expanded as transformers expects), pixels from CLIPImageProcessor.

Where the semantics were read from: recipes/elora_asam.edit, which composes stdlib/elora.edit
(elora_adapter, elora_variants, elora_knowledge) and stdlib/asam.edit (lar, with_alignment =
base + β·rcsl, rcsl = rank_align(hidden(site, at: last_prompt), anchor: detached)); the executor
code those expand to: src/exec/methods/elora.rs (knowledge spaces), src/exec/methods/asam.rs
(LAR), src/exec/train.rs (the step: body, loss, backward, `project grad`, optimiser) and
src/exec/losses.rs (target_nll, rank_align); and `mkedsl plan --model examples/model
recipes/elora_asam.edit`, which resolves `layer(7, of: 32)` to layer 1 of the 6-layer model.

What it implements, per edit (single editing: the model is restored after every case):
  - ELoRA phase 1 (not timed, as in mkedsl, whose `prepare` column it is): rank-32 LoRA
    (alpha = rank) on layer 1's mlp.up_proj and mlp.down_proj, A and B read from mkedsl's prepare
    cache (examples/.mkedsl-cache, entries `lora_init(site: layer(1).mlp.{up,down}_proj; rank: 32;
    init: null_space_svd(null_space(covariance(... over: preserve(text: 2048, vqa: 512, caption:
    512) ...); below: 0.01)))`), so both implementations edit from the very same factors and
    null spaces; W <- W - BA (in f64, as mkedsl), A frozen. The cached tensors are loaded once;
    attaching them to the model (a few small copies) is timed with the optimisation.
  - ELoRA phase 2, timed as `spaces s/edit` (mkedsl's `spaces` column counts the same work:
    EditInput::new, i.e. embedding the edit case, plus every per-edit step that is not `train`):
    the clean teacher-forced edit sequence embedded once (vision tower + projector + token
    embeddings, caught at the language model's input), 511 variants alternating mask_vision
    (even rows: a window of max(1, round(0.0417 × 36)) = 2 consecutive image tokens zeroed) and
    noise_text (odd rows: N(0, 0.01²) on every prompt text embedding, the answer never perturbed),
    the clean row and the variants through the language model without gradients up to layer 1's
    down_proj input, each B's input K = x·Aᵀ, per-row KᵀK (f64), batched eigh, literal similarity
    of the top-8 eigenvectors to the clean row's, mean of the kept (s > 0.05) covariances, its
    top-16 eigenvectors U, projector P = U·Uᵀ; one space per adapter, sharing the passes. All of
    it is examples/torch_reference.py's code (edit_embeddings, elora_variants,
    adapter_input_covariances, knowledge_space). The clean embeddings are kept for phase 3, as
    mkedsl keeps `edit.latents`.
  - ELoRA phase 3 with ASAM, timed as `optimise s/edit`: SGD(lr 10, no momentum) on both B for
    70 steps; at every step, in the order of the train body:
      (a) LAR, `lar(budget: 1e-3, count: 4)` = `adversarial([embed.vision, embed.text], budget:
          1e-3, count: 4, steps: 1, init: random, norm: l2, scale: absolute)`, regenerated
          against the current B's (examples/torch_reference_asam.py's `lar`, unchanged): δ
          uniform in ONE ℓ2 ball of radius 1e-3 over each variant's perturbed coordinates (the 36
          image columns and every prompt text column, BOS included, never the target), one
          ascent step on Σ_variants (mean target NLL of the variant) through the whole model,
          δ <- δ + ε·g/(‖g‖₂ + 1e-12), projected back onto the ball, the variants detached;
      (b) the loss `with_alignment(nll(target), edit_layer.output, adversaries, tau: 4, beta:
          10)`, which expands (stdlib/asam.edit) to
              nll(target) + 10 · rank_align(hidden(layer(1).output, at: last_prompt),
                                            over: adversaries, tau: 4, anchor: detached)
          and nothing else: unlike recipes/asam.edit, the base loss here is ELoRA's nll alone,
          so there is NO kl_to_original term and no preserve set per step. nll: mean NLL of the
          answer tokens of the clean edit row only (`nll(target)` has no `on:`, so train.rs reads
          it from the clean row, not the variants). rank_align: the output of decoder layer 1
          (the residual stream after the layer) at the last prompt token (position start - 1,
          `EditInput::last_prompt`), rows [clean, 4 variants] ℓ2-normalised (+1e-12), the clean
          row detached, σ = singular values, loss = logsumexp(σ/4) − σ₁/4
          (examples/torch_reference_asam.py's `rank_align`, unchanged);
      (c) one backward, each ∇B (out × 32) replaced by ∇B·P of its knowledge space (ELoRA Eq. 11,
          `project grad`, train.rs's `project`), then the SGD step B <- B − 10·∇B·P.

Work per step, the choices of a straightforward implementation (as examples/
torch_reference_asam.py): (a) the language model forward and backward to the input on the 4
variants; (b) ONE language-model forward over the clean row and the 4 variants through every
decoder layer, the nll read from row 0's logits at the answer positions only, rank_align from a
forward hook on layer 1; one backward (it reaches only layers 1-5: nothing below layer 1 trains
and the embeddings carry no gradient). The vision tower does not run per step: LAR perturbs its
output and nothing in it trains (mkedsl embeds once per edit too). mkedsl does less per step:
its clean nll pass starts at layer 1 from a residual of layer 0 computed once per edit (the
plan's "layer 0 once per edit"), and its 5 rank_align rows run only through layer 1.

Where this side differs from mkedsl, or mkedsl's semantics left a choice:
  - Randomness: torch's generators (one seeded per case for the 511 variants, one per case for
    LAR) instead of mkedsl's streams, so the mask windows, the text noise and LAR's random starts
    differ draw for draw (same distributions). With 511 variants the knowledge spaces hardly
    depend on the draws; LAR's ball is tiny against the latent it perturbs (radius 1e-3 over
    the 50 × 128 perturbed coordinates of case 0, whose clean ‖z‖₂ is 263), so its draws barely
    move the loss either.
  - The target is the answer's tokens alone (` {alt}`, no `</s>`), as mkedsl scores it
    (src/exec/input.rs), as in the two companion scripts.
  - Evaluation, per case: the five probes (edit, rephrase, rephrased image, text locality, image
    locality) teacher-forced once before and once after the edit (vision tower included). Rel,
    T-Gen, M-Gen: share of answer tokens whose argmax is the answer (EasyEdit's token accuracy);
    T-Loc, M-Loc: share of the positions predicting the locality answer whose argmax after the
    edit equals the argmax before it (mkedsl's headline locality, src/eval/score.rs); each the
    mean over cases. mkedsl's evaluation also decodes greedy generations and the every-position
    locality variant, which this side does not: its `evaluate` column does more work.
  - The pre-edit pass runs on the unedited weights; the adapters are attached after it
    (W − BA + BA equals W up to f32 rounding).

Run from the repository root, with torch, transformers, safetensors and Pillow installed (CI has
no PyTorch), after filling mkedsl's prepare cache once:
    mkedsl run recipes/elora_asam.edit --limit 1
    MKEDSL=target/release/mkedsl python examples/torch_reference_elora_asam.py --cases 4 --threads 1
It prints spaces s/edit, optimisation s/edit, evaluation s/case, Rel, T-Gen, M-Gen, T-Loc, M-Loc
(%), then the share of variants each knowledge space kept; `mkedsl bench recipes/elora_asam.edit
--cases 4 --threads 1` gives mkedsl's figures for the same cases (its metrics: `mkedsl run
recipes/elora_asam.edit --limit 4`).
"""
import math
import time

import torch
import torch.nn.functional as F

from torch_reference import (DATA, LoRA, adapter_input_covariances, cached, edit_embeddings,
                             elora_variants, knowledge_space, print_kept, start)
from torch_reference_asam import lar, rank_align

# recipes/elora_asam.edit (LAR's budget 1e-3 and count 4, and τ = 4, are torch_reference_asam's
# BUDGET, COUNT and TAU, the same numbers).
STEPS = 70
LR = 10.0
BETA = 10.0
RANK = 32
PRESERVE = "over: preserve(text: 2048, vqa: 512, caption: 512)"


class Hybrid:
    """The LLaVA model's language model driven from input embeddings (`hidden`, `head`: what
    torch_reference_asam's `lar` calls), with the edited layer's output caught by a hook."""

    def __init__(self, model):
        self.model = model
        self.lm = model.model.language_model
        self.head = model.lm_head
        n = len(self.lm.layers)
        self.layer = math.floor(7 * n / 32 + 0.5)  # layer(7, of: 32): round(7·L/32), 1 of 6
        self.layer_out = None
        self.lm.layers[self.layer].register_forward_hook(self._capture)
        self.mlp = self.lm.layers[self.layer].mlp
        # Phase 1, read once from mkedsl's prepare cache (f64, as stored).
        self.init = {}
        for name in ("up_proj", "down_proj"):
            t = cached("lora_init", f"site: layer({self.layer}).mlp.{name}; rank: {RANK};", PRESERVE)
            self.init[name] = (t[f"layer.{self.layer}.A"], t[f"layer.{self.layer}.B"])

    def _capture(self, module, args, out):
        self.layer_out = out[0] if isinstance(out, tuple) else out

    def hidden(self, embeds):
        """The final (normed) hidden states; layer `self.layer`'s output lands in `layer_out`."""
        return self.lm(inputs_embeds=embeds, use_cache=False).last_hidden_state

    def attach(self):
        """ELoRA's adapters on up_proj and down_proj, W <- W − BA; returns them and a restore."""
        saved, adapters = {}, []
        for name in ("up_proj", "down_proj"):
            base = getattr(self.mlp, name)
            a, b = self.init[name]
            saved[name] = (base, base.weight.detach().clone())
            with torch.no_grad():
                base.weight.copy_((base.weight.double() - b @ a).float())
            adapted = LoRA(base, rank=RANK, alpha=RANK, a=a.float(), b=b.float().clone())
            setattr(self.mlp, name, adapted)
            adapters.append(adapted)

        def restore():
            for name, (base, w) in saved.items():
                with torch.no_grad():
                    base.weight.copy_(w)
                setattr(self.mlp, name, base)
        return adapters, restore

    def spaces(self, case, adapters):
        """ELoRA phase 2: the clean embeddings `(1, T, d)`, each B's projector, variants kept."""
        edit = case["edit"]
        generator = torch.Generator().manual_seed(case["index"])
        with torch.no_grad():
            clean = edit_embeddings(self.model, edit)
            variants, window = elora_variants(edit, clean, generator)
            rows = torch.cat([clean, variants])
        covs = adapter_input_covariances(self.model, rows, adapters, self.layer)
        projectors, kept = [], []
        for c in covs:
            u, k = knowledge_space(c)
            projectors.append((u @ u.t()).float())
            kept.append(k)
        return clean.detach(), projectors, {"kept": kept, "variants": len(variants),
                                            "window": window}

    def optimise(self, case, z, adapters, projectors, steps=STEPS):
        """ELoRA phase 3 with ASAM's LAR and β·L_align, SGD on both B, gradients projected."""
        seq = case["edit"]
        answer, start = seq.answer, seq.start
        cols = torch.zeros(z.shape[1], dtype=torch.bool)
        cols[:start] = True  # image and prompt text columns, never the target
        gen = torch.Generator().manual_seed(1_000_003 + case["index"])
        params = [a.b for a in adapters]
        opt = torch.optim.SGD(params, lr=LR)
        for _ in range(steps):
            variants = lar(self, z, cols, answer, start, gen)  # (COUNT, T, d), detached
            rows = torch.cat([z, variants])  # row 0 the clean input
            final = self.hidden(rows)
            logits = self.head(final[0, start - 1:start - 1 + len(answer)])
            nll = F.cross_entropy(logits, answer)
            align = rank_align(self.layer_out[:, start - 1])
            loss = nll + BETA * align
            opt.zero_grad()
            loss.backward()
            for p, proj in zip(params, projectors):  # Eq. 11: ∇B <- ∇B·P
                p.grad = p.grad @ proj
            opt.step()


def predictions(model, seq):
    """Argmax at the positions that predict the answer's tokens (teacher-forced)."""
    with torch.no_grad():
        return seq.logits(model).argmax(-1)


def scores(pre, post, probes):
    """Rel, T-Gen, M-Gen (token accuracy) and T-Loc, M-Loc (agreement with the unedited model)."""
    acc = [(p == s.answer).float().mean().item() for p, s in zip(post[:3], probes[:3])]
    loc = [(a == b).float().mean().item() for a, b in zip(pre[3:], post[3:])]
    return acc + loc


def run(h, data):
    spaces_s, opt_s, eval_s, metrics, notes = 0.0, 0.0, 0.0, [], []
    for case in data:
        probes = case["probes"]
        t = time.perf_counter()
        pre = [predictions(h.model, p) for p in probes]
        eval_s += time.perf_counter() - t
        t = time.perf_counter()
        adapters, restore = h.attach()
        opt_s += time.perf_counter() - t
        t = time.perf_counter()
        z, projectors, note = h.spaces(case, adapters)
        spaces_s += time.perf_counter() - t
        notes.append(note)
        t = time.perf_counter()
        h.optimise(case, z, adapters, projectors)
        opt_s += time.perf_counter() - t
        t = time.perf_counter()
        post = [predictions(h.model, p) for p in probes]
        eval_s += time.perf_counter() - t
        metrics.append(scores(pre, post, probes))
        restore()
    n = len(data)
    mean = [100 * sum(m[i] for m in metrics) / n for i in range(5)]
    return spaces_s / n, opt_s / n, eval_s / n, mean, metrics, notes


def main():
    per_case = lambda ap: ap.add_argument(
        "--per-case", action="store_true", help="also print each case's metrics")
    args, model, _, _, data = start(default_cases=4, flags=per_case)
    h = Hybrid(model)
    # Warm-up (untimed): one short edit of the first case.
    adapters, restore = h.attach()
    z, projectors, _ = h.spaces(data[0], adapters)
    h.optimise(data[0], z, adapters, projectors, steps=3)
    restore()
    print(f"torch {torch.__version__} · {args.threads} thread(s) · {args.cases} cases of {DATA}")
    print(f"{'recipe':<12}{'spaces s/edit':>14}{'optimise s/edit':>16}{'evaluate s/case':>18}"
          f"{'Rel %':>8}{'T-Gen %':>9}{'M-Gen %':>9}{'T-Loc %':>9}{'M-Loc %':>9}")
    sp, o, e, m, per_case, notes = run(h, data)
    print(f"{'ELoRA+ASAM':<12}{sp:>14.3f}{o:>16.3f}{e:>18.3f}{m[0]:>8.1f}{m[1]:>9.1f}{m[2]:>9.1f}"
          f"{m[3]:>9.1f}{m[4]:>9.1f}")
    if args.per_case:
        for i, row in enumerate(per_case):
            print(f"  case {i}: " + " ".join(f"{100 * v:.1f}" for v in row))
    print_kept(notes)


if __name__ == "__main__":
    main()
