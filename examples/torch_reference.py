"""A plain PyTorch implementation of two shipped recipes, timed per edit, for the README's speed
section (issue 11: mkedsl's time per edit against a competent PyTorch implementation).

What it implements, on the same weights (examples/model, loaded with transformers'
LlavaForConditionalGeneration), the same E-VQA cases and the recipes' own hyperparameters:
  - FT-L (recipes/ft_l.edit): the last layer's mlp.down_proj.weight, Adam(lr 1.5e-3), 70 steps;
  - LoRA (recipes/lora.edit): rank-16 LoRA (alpha 32) on layer 1's up_proj and down_proj,
    A Kaiming-uniform and B zero as PEFT initialises them, Adam(lr 1.5e-3), 70 steps.
The loss is the negative log-likelihood of the answer tokens (` {alt}</s>`) after the LLaVA-1.5
prompt `USER: <image>\\n{src} ASSISTANT:`; input ids come from `mkedsl infer --json` (image tokens
expanded as transformers expects), pixels from CLIPImageProcessor. Every step runs the whole
model on the whole input, vision tower included, as EasyEdit's editors do; the weights are
restored after each case (single editing).

Evaluation, per case: the five probes (edit, rephrase, rephrased image, text locality, image
locality), each one teacher-forced pass before and one after the edit; Rel is the share of answer
tokens whose argmax is the answer (EasyEdit's token accuracy).

Run from the repository root, with torch, transformers and Pillow installed (CI has no PyTorch):
    MKEDSL=target/debug/mkedsl python examples/torch_reference.py --cases 8 --threads 1
It prints one line per recipe: optimisation s/edit, evaluation s/case, Rel. `mkedsl bench
recipes/ft_l.edit recipes/lora.edit --cases 8` gives mkedsl's figures for the same cases.
"""
import argparse
import json
import math
import os
import subprocess
import time

import torch
from PIL import Image
from transformers import AutoTokenizer, CLIPImageProcessor, LlavaForConditionalGeneration

MODEL = "examples/model"
DATA = "examples/data/evqa.json"
MKEDSL = os.environ.get("MKEDSL", "target/debug/mkedsl")
# The end token mkedsl appends to an answer (`</s>`); the tokenizer's config does not name it.
EOS = json.load(open(os.path.join(MODEL, "config.json")))["text_config"]["eos_token_id"]
STEPS = 70
LR = 1.5e-3


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
        answer_ids = tok(" " + answer, add_special_tokens=False)["input_ids"] + [EOS]
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
    def __init__(self, base, rank=16, alpha=32):
        super().__init__()
        self.base = base
        self.a = torch.nn.Parameter(torch.empty(rank, base.in_features))
        self.b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
        torch.nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))
        self.scale = alpha / rank

    def forward(self, x):
        return self.base(x) + (x @ self.a.t() @ self.b.t()) * self.scale


def ft_l(model):
    w = model.model.language_model.layers[-1].mlp.down_proj.weight
    saved = w.detach().clone()
    w.requires_grad_(True)

    def restore():
        with torch.no_grad():
            w.copy_(saved)
    return [w], restore


def lora(model):
    mlp = model.model.language_model.layers[1].mlp
    up, down = mlp.up_proj, mlp.down_proj
    mlp.up_proj, mlp.down_proj = LoRA(up), LoRA(down)

    def restore():
        mlp.up_proj, mlp.down_proj = up, down
    return [p for m in (mlp.up_proj, mlp.down_proj) for p in (m.a, m.b)], restore


def run(model, data, method):
    opt_s, eval_s, rel = 0.0, 0.0, []
    for case in data:
        t = time.perf_counter()
        with torch.no_grad():
            [p.accuracy(model) for p in case["probes"]]  # the pre-edit pass
        eval_s += time.perf_counter() - t
        t = time.perf_counter()
        params, restore = method(model)
        opt = torch.optim.Adam(params, lr=LR)
        for _ in range(STEPS):
            opt.zero_grad()
            case["edit"].loss(model).backward()
            opt.step()
        opt_s += time.perf_counter() - t
        t = time.perf_counter()
        scores = [p.accuracy(model) for p in case["probes"]]
        eval_s += time.perf_counter() - t
        rel.append(scores[0])
        restore()
    n = len(data)
    return opt_s / n, eval_s / n, 100 * sum(rel) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration.from_pretrained(MODEL, torch_dtype=torch.float32)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    tok = AutoTokenizer.from_pretrained(MODEL)
    processor = CLIPImageProcessor.from_pretrained(MODEL)
    data = cases(tok, processor, args.cases)
    run(model, data[:1], ft_l)  # warm-up
    print(f"torch {torch.__version__} · {args.threads} thread(s) · {args.cases} cases of {DATA}")
    print(f"{'recipe':<8}{'optimise s/edit':>18}{'evaluate s/case':>18}{'Rel %':>8}")
    for name, method in [("FT-L", ft_l), ("LoRA", lora)]:
        o, e, r = run(model, data, method)
        print(f"{name:<8}{o:>18.3f}{e:>18.3f}{r:>8.1f}")


if __name__ == "__main__":
    main()
