"""A plain PyTorch implementation of five shipped recipes, timed per edit, for the README's speed
section (issue 11: mkedsl's time per edit against a competent PyTorch implementation).

What it implements, on the same weights (examples/model, loaded with transformers'
LlavaForConditionalGeneration), the same E-VQA cases and the recipes' own hyperparameters:
  - FT-L (recipes/ft_l.edit): the last layer's mlp.down_proj.weight, Adam(lr 1.5e-3), 70 steps;
  - LoRA (recipes/lora.edit): rank-16 LoRA (alpha 32) on layer 1's up_proj and down_proj,
    A Kaiming-uniform and B zero as PEFT initialises them, Adam(lr 1.5e-3), 70 steps;
  - LoRA-Null (recipes/lora_null.edit): rank-16 LoRA (alpha = rank) on the same projections,
    A and B from the top-16 SVD of W·P_keep and W <- W - BA, A frozen, Adam(lr 5e-3), 70 steps;
  - LPEdit (recipes/lpedit.edit): mlp.down_proj.weight of layers 3-5, Adam(lr 0.1), 50 steps,
    each step's Adam update u replaced by u·U·Uᵀ / (1 + 0.5) (U the preserved null space);
  - ELoRA (recipes/elora.edit): rank-32 LoRA (alpha = rank) on layer 1's up_proj and down_proj,
    initialised in the multimodal null space (preserve(text: 2048, vqa: 512, caption: 512),
    eigenvalues < 1e-2) as LoRA-Null is, W <- W - BA, A frozen; per edit, a knowledge space of
    each B's input (below), then SGD(lr 10) on both B for 70 steps, each gradient ∇B (out × 32)
    replaced by ∇B·P with P = U·Uᵀ the projector of that B's knowledge space (Eq. 11).
The null spaces and the LoRA factors of LoRA-Null and ELoRA are read from mkedsl's prepare cache
(examples/.mkedsl-cache), so both implementations edit with the very same projectors: run
`mkedsl run recipes/lora_null.edit --limit 1`, `mkedsl run recipes/lpedit.edit --limit 1` and
`mkedsl run recipes/elora.edit --limit 1` once first. Preparing them is not part of the time per
edit, in either implementation.

ELoRA's knowledge space (Alg. 1 lines 11-23), per edit, timed apart as `spaces s/edit` (mkedsl's
`spaces` column counts the same work: embedding the edit case, the variants, the spaces):
  - the clean teacher-forced edit sequence (prompt + answer) is embedded once, image features
    merged by transformers' own LlavaModel (a pre-hook on the language model catches its
    `inputs_embeds`, so the rest of the model is not run);
  - 511 variants of those embeddings, alternating by row as `apply: each` does in mkedsl: even
    rows (256) zero one window of consecutive image-token embeddings (the projector's outputs at
    the image positions), the window max(1, round(0.0417 × N_v)) tokens (2 of the tiny model's
    36) at a uniform start; odd rows (255) add N(0, 0.01²) to every coordinate of every prompt
    text-token embedding (every non-image column before the answer, BOS included; the answer's
    teacher-forced tokens are never perturbed). Torch's RNG (seeded per case), not mkedsl's, so
    the draws differ but their distributions are the same;
  - the clean row and the 511 variants go through the language model in one batch, in chunks of
    16384 // T rows (mkedsl's chunking: two passes here), under no_grad, and the pass stops at
    layer 1's down_proj input (a pre-hook raises): the adapters are attached, as in mkedsl, so
    the readings are each B's input K = x·Aᵀ (x the projection's input, A the frozen factor) at
    every token of the row, answer tokens included;
  - per row C_b = KᵀK (32 × 32, f64); the top-8 eigenvectors U_b of every row by one batched
    eigh; the literal similarity s_b = ‖U_bᵀU_0‖²_F / 8 to the clean row's; the mean of the C_b
    with s_b > 0.05 (the clean C_0 alone if none passes); its top-16 eigenvectors U.
  The up and down spaces share the forward passes. The script prints the share of variants kept.

The loss is the negative log-likelihood of the answer tokens (` {alt}`, no `</s>`: mkedsl scores
the answer's tokens alone, src/exec/input.rs) after the LLaVA-1.5
prompt `USER: <image>\\n{src} ASSISTANT:`; input ids come from `mkedsl infer --json` (image tokens
expanded as transformers expects), pixels from CLIPImageProcessor. Every step runs the whole
model on the whole input, vision tower included, as EasyEdit's editors do; the weights are
restored after each case (single editing).

Evaluation, per case: the five probes (edit, rephrase, rephrased image, text locality, image
locality), each one teacher-forced pass before and one after the edit; Rel is the share of answer
tokens whose argmax is the answer (EasyEdit's token accuracy).

Run from the repository root, with torch, transformers, safetensors and Pillow installed (CI has
no PyTorch):
    MKEDSL=target/debug/mkedsl python examples/torch_reference.py --cases 8 --threads 1
It prints one line per recipe: per-edit space construction s/edit (ELoRA only; – for the
others), optimisation s/edit, evaluation s/case, Rel; then ELoRA's share of variants kept.
`mkedsl bench recipes/ft_l.edit recipes/lora.edit recipes/lora_null.edit recipes/lpedit.edit
recipes/elora.edit --cases 8` gives mkedsl's figures for the same cases (compare ELoRA's
`spaces` and `optimise` columns).
"""
import argparse
import glob
import json
import math
import os
import subprocess
import time

import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoTokenizer, CLIPImageProcessor, LlavaForConditionalGeneration

MODEL = "examples/model"
DATA = "examples/data/evqa.json"
MKEDSL = os.environ.get("MKEDSL", "target/debug/mkedsl")
CACHE = os.path.join(os.path.dirname(MODEL), ".mkedsl-cache")
IMAGE_TOKEN = json.load(open(os.path.join(MODEL, "config.json")))["image_token_index"]


def prompt_ids(question, image):
    prompt = f"USER: <image>\n{question} ASSISTANT:" if image else f"USER: {question} ASSISTANT:"
    args = [MKEDSL, "infer", "--model", MODEL, "--prompt", prompt, "--max-new-tokens", "1", "--json"]
    if image:
        args += ["--image", image]
    return json.loads(subprocess.check_output(args))["input_ids"]


class Example:
    """One teacher-forced sequence: prompt ids + answer ids, pixels, the answer's positions."""

    def __init__(self, tok, processor, question, answer, image):
        ids = prompt_ids(question, image)
        answer_ids = tok(" " + answer.strip(), add_special_tokens=False)["input_ids"]
        self.ids = torch.tensor([ids + answer_ids])
        self.start = len(ids)
        self.answer = torch.tensor(answer_ids)
        self.pixels = (processor(Image.open(image).convert("RGB"), return_tensors="pt")["pixel_values"]
                       if image else None)

    def logits(self, model):
        kwargs = {"input_ids": self.ids}
        if self.pixels is not None:
            kwargs["pixel_values"] = self.pixels
        out = model(**kwargs).logits[0]
        return out[self.start - 1:self.start - 1 + len(self.answer)]

    def loss(self, model):
        return torch.nn.functional.cross_entropy(self.logits(model), self.answer)

    def accuracy(self, model):
        with torch.no_grad():
            return (self.logits(model).argmax(-1) == self.answer).float().mean().item()


def cases(tok, processor, n):
    rows = json.load(open(DATA))[:n]
    img = lambda p: os.path.join(os.path.dirname(DATA), p)
    out = []
    for r in rows:
        out.append({
            "index": len(out),
            "edit": Example(tok, processor, r["src"], r["alt"], img(r["image"])),
            "probes": [
                Example(tok, processor, r["src"], r["alt"], img(r["image"])),
                Example(tok, processor, r["rephrase"], r["alt"], img(r["image"])),
                Example(tok, processor, r["src"], r["alt"], img(r["image_rephrase"])),
                Example(tok, processor, r["loc"], r["loc_ans"], None),
                Example(tok, processor, r["m_loc_q"], r["m_loc_a"], img(r["m_loc"])),
            ],
        })
    return out


class LoRA(torch.nn.Module):
    """`base(x) + scale · B·A·x`; A Kaiming-uniform and B zero, or given (A then frozen)."""

    def __init__(self, base, rank=16, alpha=32, a=None, b=None):
        super().__init__()
        self.base = base
        if a is None:
            self.a = torch.nn.Parameter(torch.empty(rank, base.in_features))
            self.b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
            torch.nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))
        else:
            self.register_buffer("a", a)
            self.b = torch.nn.Parameter(b)
        self.scale = alpha / rank

    def forward(self, x):
        return self.base(x) + (x @ self.a.t() @ self.b.t()) * self.scale


def cached(kind, *fragments):
    """The tensors of mkedsl's prepare-cache entry of this kind whose recipe has every fragment."""
    for path in sorted(glob.glob(os.path.join(CACHE, "*.json"))):
        entry = json.load(open(path))
        if entry["kind"] == kind and all(f in entry["recipe"] for f in fragments):
            return load_file(path[: -len(".json")] + ".safetensors")
    raise SystemExit(f"no cached {kind} with {fragments} in {CACHE}: run the recipe once "
                     "with `mkedsl run RECIPE --limit 1`")


class Method:
    """What one recipe trains: its parameters, optimiser settings, an optional projection of
    each Adam update, and how to restore the model afterwards. ELoRA adds a per-edit preparation
    `prepare(case)` (timed apart; returns a note for the report), a projection of each gradient
    `project_grad()` (after backward, before the optimiser's step), and plain SGD."""

    def __init__(self, params, restore, steps, lr, project=None, prepare=None,
                 project_grad=None, optimizer=torch.optim.Adam):
        self.params, self.restore, self.steps, self.lr = params, restore, steps, lr
        self.project = project
        self.prepare, self.project_grad, self.optimizer = prepare, project_grad, optimizer


def ft_l(model):
    w = model.model.language_model.layers[-1].mlp.down_proj.weight
    saved = w.detach().clone()
    w.requires_grad_(True)

    def restore():
        with torch.no_grad():
            w.copy_(saved)
        w.requires_grad_(False)
    return Method([w], restore, steps=70, lr=1.5e-3)


def lora(model):
    mlp = model.model.language_model.layers[1].mlp
    up, down = mlp.up_proj, mlp.down_proj
    mlp.up_proj, mlp.down_proj = LoRA(up), LoRA(down)

    def restore():
        mlp.up_proj, mlp.down_proj = up, down
    params = [p for m in (mlp.up_proj, mlp.down_proj) for p in (m.a, m.b)]
    return Method(params, restore, steps=70, lr=1.5e-3)


def lora_null(model):
    mlp = model.model.language_model.layers[1].mlp
    saved = {}
    params = []
    for name in ("up_proj", "down_proj"):
        base = getattr(mlp, name)
        init = cached("lora_init", f"site: layer(1).mlp.{name}; rank: 16;", "over: preserve(text: 256)")
        a, b = init["layer.1.A"], init["layer.1.B"]
        saved[name] = (base, base.weight.detach().clone())
        with torch.no_grad():  # W <- W - BA (alpha = rank), in f64 as mkedsl computes it
            base.weight.copy_((base.weight.double() - b @ a).float())
        adapted = LoRA(base, rank=16, alpha=16, a=a.float(), b=b.float().clone())
        setattr(mlp, name, adapted)
        params.append(adapted.b)

    def restore():
        for name, (base, w) in saved.items():
            with torch.no_grad():
                base.weight.copy_(w)
            setattr(mlp, name, base)
    return Method(params, restore, steps=70, lr=5e-3)


def lpedit(model):
    space = cached("space", "stream: layers(3..6).mlp.down_proj.input", "below: 0.02")
    layers = model.model.language_model.layers
    ws = [layers[l].mlp.down_proj.weight for l in (3, 4, 5)]
    bases = [space[f"layer.{l}"].float() for l in (3, 4, 5)]
    saved = [w.detach().clone() for w in ws]
    for w in ws:
        w.requires_grad_(True)

    def project(before):
        # u <- u·U·Uᵀ / (1 + λ), λ = 0.5, on the update Adam just applied.
        with torch.no_grad():
            for w, w0, u in zip(ws, before, bases):
                w.copy_(w0 + ((w - w0) @ u) @ u.t() / 1.5)

    def restore():
        with torch.no_grad():
            for w, w0 in zip(ws, saved):
                w.copy_(w0)
                w.requires_grad_(False)
    return Method(ws, restore, steps=50, lr=0.1, project=project)


class StopForward(Exception):
    """Raised by a hook once a forward pass has produced what it was run for."""


def edit_embeddings(model, example):
    """The language model's input embeddings of an example, image features merged, `(1, T, d)`:
    transformers' own LlavaModel builds them; a pre-hook catches them and stops the pass."""
    caught = {}

    def catch(module, args, kwargs):
        caught["embeds"] = kwargs["inputs_embeds"]
        raise StopForward

    hook = model.model.language_model.register_forward_pre_hook(catch, with_kwargs=True)
    try:
        model(input_ids=example.ids, pixel_values=example.pixels)
    except StopForward:
        pass
    finally:
        hook.remove()
    return caught["embeds"]


def elora_variants(example, embeds, generator, count=511, share=0.0417, sigma=0.01):
    """ELoRA's perturbed copies of the edit sequence's embeddings (Appendix C.2; mkedsl's
    `perturb([mask_vision(share), noise_text(sigma)], count, apply: each)`): row i masks when i
    is even, adds text noise when odd. Returns `(count, T, d)` and the mask window."""
    _, t, d = embeds.shape
    ids = example.ids[0]
    prompt = torch.arange(t) < example.start  # the answer's teacher-forced tokens stay clean
    image = ids == IMAGE_TOKEN
    visual = (image & prompt).nonzero().squeeze(1)
    text = (~image & prompt).nonzero().squeeze(1)
    window = min(max(1, math.floor(share * len(visual) + 0.5)), len(visual))
    out = embeds.expand(count, t, d).clone()
    masked = torch.arange(0, count, 2)
    noisy = torch.arange(1, count, 2)
    starts = torch.randint(0, len(visual) - window + 1, (len(masked),), generator=generator)
    columns = visual[starts[:, None] + torch.arange(window)]  # (masked, window)
    out[masked[:, None], columns] = 0.0
    noise = torch.randn(len(noisy), len(text), d, generator=generator, dtype=torch.float64)
    out[noisy[:, None], text] += (sigma * noise).to(out.dtype)
    return out, window


def adapter_input_covariances(model, rows, adapters, layer, tokens_per_pass=16384):
    """Per row `KᵀK` (f64) of each adapter's B input `K = x·Aᵀ` at every token, from the rows'
    embeddings: the language model runs in chunks, without gradients, and stops at the input
    of `adapters[-1]` (the deepest one: layer `layer`'s down_proj)."""
    lm = model.model.language_model
    chunk = max(1, tokens_per_pass // rows.shape[1])
    seen = {}
    hooks = []
    for i, adapter in enumerate(adapters):
        def read(module, args, i=i):
            seen[i] = args[0]
            if i == len(adapters) - 1:
                raise StopForward
        hooks.append(adapter.register_forward_pre_hook(read))
    covs = [[] for _ in adapters]
    try:
        with torch.no_grad():
            for start in range(0, rows.shape[0], chunk):
                seen.clear()
                try:
                    lm(inputs_embeds=rows[start:start + chunk], use_cache=False)
                except StopForward:
                    pass
                for i, adapter in enumerate(adapters):
                    k = (seen[i] @ adapter.a.t()).double()  # (rows, T, r)
                    covs[i].append(k.transpose(1, 2) @ k)
    finally:
        for h in hooks:
            h.remove()
    return [torch.cat(c) for c in covs]


def knowledge_space(covs, top=8, keep_above=0.05, rank=16):
    """ELoRA's filter (Eq. 9-10, literal similarity) over per-row covariances, row 0 the clean
    case: the top-`rank` eigenvectors `(r, rank)` of the mean of the kept variants' covariances,
    and how many variants were kept."""
    _, vectors = torch.linalg.eigh(covs)  # ascending, batched over the rows
    principal = vectors[..., -top:]
    overlap = principal[1:].transpose(1, 2) @ principal[0]
    similarity = overlap.square().sum((1, 2)) / top
    kept = similarity > keep_above
    mean = covs[1:][kept].mean(0) if kept.any() else covs[0]
    _, vectors = torch.linalg.eigh(mean)
    return vectors[:, -rank:], int(kept.sum())


def elora(model):
    layer = 1
    mlp = model.model.language_model.layers[layer].mlp
    saved, adapters = {}, []
    for name in ("up_proj", "down_proj"):
        base = getattr(mlp, name)
        init = cached("lora_init", f"site: layer({layer}).mlp.{name}; rank: 32;",
                      "over: preserve(text: 2048, vqa: 512, caption: 512)")
        a, b = init[f"layer.{layer}.A"], init[f"layer.{layer}.B"]
        saved[name] = (base, base.weight.detach().clone())
        with torch.no_grad():  # W <- W - BA (alpha = rank), in f64 as mkedsl computes it
            base.weight.copy_((base.weight.double() - b @ a).float())
        adapted = LoRA(base, rank=32, alpha=32, a=a.float(), b=b.float().clone())
        setattr(mlp, name, adapted)
        adapters.append(adapted)
    projectors = []

    def prepare(case):
        edit = case["edit"]
        generator = torch.Generator().manual_seed(case["index"])
        with torch.no_grad():
            clean = edit_embeddings(model, edit)
            variants, window = elora_variants(edit, clean, generator)
            rows = torch.cat([clean, variants])
        covs = adapter_input_covariances(model, rows, adapters, layer)
        kept = []
        projectors.clear()
        for c in covs:
            u, k = knowledge_space(c)
            projectors.append((u @ u.t()).float())
            kept.append(k)
        return {"kept": kept, "variants": len(variants), "window": window}

    def project_grad():
        # Eq. 11: ∇B <- ∇B·P, on B's input side (B is out × r, P is r × r).
        for adapter, p in zip(adapters, projectors):
            adapter.b.grad = adapter.b.grad @ p

    def restore():
        for name, (base, w) in saved.items():
            with torch.no_grad():
                base.weight.copy_(w)
            setattr(mlp, name, base)
    return Method([m.b for m in adapters], restore, steps=70, lr=10.0, prepare=prepare,
                  project_grad=project_grad, optimizer=torch.optim.SGD)


def print_kept(notes, prefix=""):
    """One line per knowledge space: the variants its filter kept over all edits (`notes` as
    `elora` returns them per edit)."""
    total = sum(n["variants"] for n in notes)
    for i, space in enumerate(("up_know", "down_know")):
        kept = sum(n["kept"][i] for n in notes)
        print(f"{prefix}{space}: kept {kept} of {total} variants ({100 * kept / total:.1f} %), "
              f"mask window {notes[0]['window']} image tokens, text noise σ 0.01")


def run(model, data, method):
    spaces_s, opt_s, eval_s, rel, notes = 0.0, 0.0, 0.0, [], []
    for case in data:
        t = time.perf_counter()
        with torch.no_grad():
            [p.accuracy(model) for p in case["probes"]]  # the pre-edit pass
        eval_s += time.perf_counter() - t
        t = time.perf_counter()
        m = method(model)
        opt_s += time.perf_counter() - t
        if m.prepare:
            t = time.perf_counter()
            notes.append(m.prepare(case))
            spaces_s += time.perf_counter() - t
        t = time.perf_counter()
        opt = m.optimizer(m.params, lr=m.lr)
        for _ in range(m.steps):
            opt.zero_grad()
            case["edit"].loss(model).backward()
            if m.project_grad:
                m.project_grad()
            before = [p.detach().clone() for p in m.params] if m.project else None
            opt.step()
            if m.project:
                m.project(before)
        opt_s += time.perf_counter() - t
        t = time.perf_counter()
        scores = [p.accuracy(model) for p in case["probes"]]
        eval_s += time.perf_counter() - t
        rel.append(scores[0])
        m.restore()
    n = len(data)
    return spaces_s / n, opt_s / n, eval_s / n, 100 * sum(rel) / n, notes


def load(threads):
    """The model (frozen, eval mode), its tokenizer and image processor, on `threads` threads."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration.from_pretrained(MODEL, dtype=torch.float32)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, AutoTokenizer.from_pretrained(MODEL), CLIPImageProcessor.from_pretrained(MODEL)


def start(default_cases, flags=None):
    """Every reference script's opening: `--cases` and `--threads` (and the script's own flags,
    added by `flags(parser)`), the model loaded on that many threads, the first cases read.
    Returns (args, model, tokenizer, processor, cases)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=default_cases)
    ap.add_argument("--threads", type=int, default=1)
    if flags:
        flags(ap)
    args = ap.parse_args()
    model, tok, processor = load(args.threads)
    return args, model, tok, processor, cases(tok, processor, args.cases)


def main():
    args, model, _, _, data = start(default_cases=8)
    run(model, data[:1], ft_l)  # warm-up
    print(f"torch {torch.__version__} · {args.threads} thread(s) · {args.cases} cases of {DATA}")
    print(f"{'recipe':<10}{'spaces s/edit':>14}{'optimise s/edit':>16}{'evaluate s/case':>18}"
          f"{'Rel %':>8}")
    methods = [("FT-L", ft_l), ("LoRA", lora), ("LoRA-Null", lora_null), ("LPEdit", lpedit),
               ("ELoRA", elora)]
    elora_notes = []
    for name, method in methods:
        sp, o, e, r, notes = run(model, data, method)
        spaces = f"{sp:>14.3f}" if notes else f"{'–':>14}"
        print(f"{name:<10}{spaces}{o:>16.3f}{e:>18.3f}{r:>8.1f}")
        if name == "ELoRA":
            elora_notes = notes
    if elora_notes:
        print_kept(elora_notes, "ELoRA ")


if __name__ == "__main__":
    main()
