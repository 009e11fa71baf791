"""The round-7 probe of the toy verifier (docs/TOY-LOG.md, issue 17): train a verifier on a finished demo run
and print within-problem AUC, pooled AUC, Best@32, Pass@1 and Pass@32 of its final model and mix on the
300 claim problems. Not project code: an experiment harness kept so the round can be rerun. Usage:
  PYTHONPATH=$PWD/src:bench/toy_verifier_probe python bench/toy_verifier_probe/probe.py RUN/seed-s [flags]
"""

import argparse
import json
import math
import random
import sqlite3
import time
from collections import defaultdict

import numpy as np
import torch

from wiseft.metrics.estimators import best_at_k
from wiseft.tasks import toy as T
from wiseft.train import toy as TT
from wiseft.verify import Item, OutcomeRewardModel
from wiseft.verify.toy import ToyVerifierConfig, toy_classifier


def load(db, variant, like):
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    vid = c.execute("select id from variants where name=?", (variant,)).fetchone()[0]
    rows = c.execute(
        "select s.problem_id, p.prompt, s.completion, g.correct from samples s join grades g "
        "using(variant_id,problem_id,sample_idx) join problems p on p.problem_id=s.problem_id "
        "where s.variant_id=? and s.problem_id like ? order by s.problem_id, s.sample_idx",
        (vid, like),
    ).fetchall()
    out = defaultdict(list)
    for pid, prompt, comp, corr in rows:
        out[pid].append((prompt, comp, bool(corr)))
    return dict(out)


def variants(db):
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    return {n: k for n, k in c.execute("select name, kind from variants")}


def auc(s, y):
    s, y = np.asarray(s, float), np.asarray(y, bool)
    pos, neg = s[y], np.sort(s[~y])
    if not len(pos) or not len(neg):
        return float("nan")
    below, upto = np.searchsorted(neg, pos, "left"), np.searchsorted(neg, pos, "right")
    return float((below + 0.5 * (upto - below)).sum() / (len(pos) * len(neg)))


def metrics(per, scores):
    """per: pid -> list of samples; scores: pid -> array."""
    p1, p32, b32, win = [], [], [], []
    allS, allY = [], []
    for pid, ss in per.items():
        y = np.array([c for _, _, c in ss])
        s = scores[pid]
        p1.append(y.mean())
        p32.append(y.any())
        b32.append(best_at_k(s, y, len(y)))
        if 0 < y.sum() < len(y):
            win.append(auc(s, y))
        allS.extend(s)
        allY.extend(y)
    return dict(
        pass1=np.mean(p1),
        pass32=np.mean(p32),
        best32=np.mean(b32),
        win_auc=np.mean(win),
        n_mixed=len(win),
        cross_auc=auc(allS, allY),
    )


def parse(prompt):
    return T.parse_prompt(prompt)


def labels_of(prompt, comp):
    loc = T.step_labels(parse(prompt), comp)
    cum, ok = [], 1
    for lab in loc:
        ok = ok and lab
        cum.append(int(ok))
    return loc, cum


def synth(n_problems, seed, exclude, per=8, slip=0.15):
    """Fresh clean problems with chains that slip like a sampler (digit errors carried forward)."""
    rng = random.Random(f"synth-{seed}")
    out = []
    seen = set(exclude)
    while len(out) < n_problems * per:
        nums = tuple(rng.randint(10, 99) for _ in range(4))
        if nums in seen:
            continue
        seen.add(nums)
        prompt = T.prompt_text(nums)
        for _ in range(per):
            acc, parts = nums[0], []
            for x in nums[1:]:
                acc += x
                r = rng.random()
                if r < slip:
                    acc = max(0, acc + rng.choice((-10, -2, -1, 1, 2, 10, -20, 20, 100, -100)))
                parts.append(T.rev(acc))
            comp = ",".join(parts)
            out.append((prompt, comp, T.extract_answer(comp) == str(sum(nums)), "synth" + prompt))
    return out


class Rows:
    target = "outcome"

    def __init__(self, ver, samples):
        self.items = []
        for _i, (prompt, comp, corr, pid) in enumerate(samples):
            enc = ver.encode(Item(prompt, comp))
            loc, cum = labels_of(prompt, comp)
            y = float(corr) if Rows.target == "outcome" else float(all(loc) and len(loc) > 0)
            self.items.append((enc, y, loc, cum, pid))


def train(ver, rows, args, log):
    model = ver.model
    model.train()
    aux = torch.nn.Linear(model.config.n_embd, 1)
    torch.manual_seed(args.seed)
    params = [p for p in model.parameters() if p.requires_grad] + list(aux.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0, betas=(0.9, 0.98))
    items = rows.items
    labels = np.array([it[1] for it in items])
    npos = labels.sum()
    posw = torch.tensor((len(labels) - npos) / max(npos, 1)) if args.balance else torch.tensor(1.0)
    by_pid = defaultdict(list)
    for i, it in enumerate(items):
        by_pid[it[4]].append(i)
    rng = random.Random(args.seed)
    pids = list(by_pid)
    t0 = time.time()
    c0 = time.process_time()
    for step in range(1, args.steps + 1):
        if args.group:
            batch = []
            for pid in rng.sample(pids, args.batch // args.group):
                idx = by_pid[pid]
                batch += rng.sample(idx, min(args.group, len(idx)))
        else:
            batch = rng.sample(range(len(items)), args.batch)
        bt = [items[i] for i in batch]
        encs = [b[0] for b in bt]
        ids, mask, pos = ver.pad(encs)
        out = ver._base(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
        hid = out[0] if isinstance(out, tuple) else out.last_hidden_state
        W = ids.shape[1]
        dense = ver._head(hid).float()[..., 0]
        last = dense[:, -1]
        y = torch.tensor([b[1] for b in bt])
        lr = (
            args.lr
            * min(1.0, step / args.warmup)
            * (0.5 * (1 + math.cos(math.pi * step / args.steps)) * 0.9 + 0.1)
        )
        for g in opt.param_groups:
            g["lr"] = lr
        loss = args.w_out * torch.nn.functional.binary_cross_entropy_with_logits(last, y, pos_weight=posw)
        if args.w_cum or args.w_loc:
            cum = torch.full((len(bt), W), -1.0)
            loc = torch.full((len(bt), W), -1.0)
            for i, b in enumerate(bt):
                n = len(b[2])
                if n:
                    loc[i, W - n :] = torch.tensor(b[2], dtype=torch.float)
                    cum[i, W - n : W - 1] = torch.tensor(b[3][:-1], dtype=torch.float)
            if args.w_cum:
                k = cum >= 0
                loss = loss + args.w_cum * torch.nn.functional.binary_cross_entropy_with_logits(
                    dense[k], cum[k]
                )
            if args.w_loc:
                k = loc >= 0
                a = aux(hid)[..., 0]
                loss = loss + args.w_loc * torch.nn.functional.binary_cross_entropy_with_logits(a[k], loc[k])
        if args.w_pair:
            terms = []
            for start in range(0, len(bt), args.group):
                s = last[start : start + args.group]
                yy = y[start : start + args.group]
                if 0 < yy.sum() < len(yy):
                    d = s[yy > 0][:, None] - s[yy == 0][None, :]
                    terms.append(torch.nn.functional.softplus(-d).mean())
            if terms:
                loss = loss + args.w_pair * torch.stack(terms).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 50 == 0 or step == args.steps:
            log(
                f"  step {step} loss {loss.item():.4f} ({time.time() - t0:.1f}s, cpu {time.process_time() - c0:.1f}s)"
            )
    model.eval()
    train.aux = aux
    return time.process_time() - c0


def score(ver, per):
    flat = [(pid, Item(p, c)) for pid, ss in per.items() for p, c, _ in ss]
    t0 = time.process_time()
    with torch.inference_mode():
        s = ver.score([it for _, it in flat]).scores
    out, k = {}, 0
    for pid, ss in per.items():
        out[pid] = np.asarray(s[k : k + len(ss)])
        k += len(ss)
    return out, time.process_time() - t0


def likelihood_scores(lm_path, per, how):
    from transformers import AutoModelForCausalLM

    tok = TT.toy_tokenizer()
    lm = AutoModelForCausalLM.from_pretrained(lm_path).eval()
    out = {}
    with torch.inference_mode():
        for pid, ss in per.items():
            prompt = ss[0][0]
            pids = tok(prompt, add_special_tokens=False)["input_ids"]
            vals = []
            cache = {}
            for _, c, _ in ss:
                if c in cache:
                    vals.append(cache[c])
                    continue
                cids = tok(c, add_special_tokens=False)["input_ids"]
                ids = torch.tensor([pids + cids])
                lp = torch.log_softmax(lm(ids).logits[0, :-1], -1)
                tl = lp[torch.arange(len(pids) - 1, ids.shape[1] - 1), ids[0, len(pids) :]]
                v = float(tl.mean()) if how == "mean" else float(tl.min())
                cache[c] = v
                vals.append(v)
            out[pid] = np.array(vals)
    return out


def samples_val(args, db, final):
    test_keys = [tuple(T.parse_prompt(ss[0][0])) for ss in load(db, final, "%test%").values()]
    syn = synth(200, 999, test_keys, per=8)
    return syn


@torch.inference_mode()
def diag(ver, aux, samples, log):
    rows = Rows(ver, samples).items
    tokA, tokD, tokY, last, ally = [], [], [], [], []
    for start in range(0, len(rows), 256):
        bt = rows[start : start + 256]
        ids, mask, pos = ver.pad([b[0] for b in bt])
        out = ver._base(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
        hid = out[0] if isinstance(out, tuple) else out.last_hidden_state
        d = ver._head(hid).float()[..., 0]
        a = aux(hid)[..., 0]
        W = ids.shape[1]
        for i, b in enumerate(bt):
            n = len(b[2])
            tokA += a[i, W - n :].tolist()
            tokD += d[i, W - n :].tolist()
            tokY += list(b[2])
            last.append(float(d[i, -1]))
            ally.append(all(b[2]))
    log(
        f"diag synth-heldout: token-AUC aux={auc(tokA, tokY):.3f} dense={auc(tokD, tokY):.3f} "
        f"sample-AUC(last vs all-steps-right)={auc(last, ally):.3f} frac_wrong_tokens={1 - np.mean(tokY):.3f}"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")  # .../seed-s
    ap.add_argument("--init", default="final")
    ap.add_argument("--data", default="base")  # comma list: base, final-sft?, synth
    ap.add_argument("--synth", type=int, default=0)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--group", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--w-out", type=float, default=1.0)
    ap.add_argument("--w-cum", type=float, default=0.0)
    ap.add_argument("--w-loc", type=float, default=0.0)
    ap.add_argument("--w-pair", type=float, default=0.0)
    ap.add_argument("--balance", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--target", default="outcome")
    ap.add_argument("--fresh", default="")
    ap.add_argument("--extra", type=int, default=0)
    ap.add_argument("--lm", default="")
    ap.add_argument("--diag", default="")
    ap.add_argument("--freeze", type=int, default=0)
    ap.add_argument("--fresh-n", type=int, default=0)
    ap.add_argument("--likelihood", action="store_true")
    ap.add_argument("--eval", default="final,mix")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    def log(m):
        return print(m, flush=True)

    run = args.run.rstrip("/")
    db = f"{run}/samples.db"
    res = json.load(open(f"{run}/results.json"))
    roles = res["roles"]
    final = roles["final"]
    mix = roles["mix"]
    step = int(final.split("=")[1].split(",")[0])
    sft = f"{run}/sft/checkpoint-{step}"
    evals = {"final": load(db, final, "%test%"), "mix": load(db, mix, "%test%")}
    claim = set(sorted(evals["final"])[:300])
    evals = {k: {p: v for p, v in d.items() if p in claim} for k, d in evals.items()}
    if args.likelihood:
        for how in ("mean", "min"):
            for k, per in evals.items():
                m = metrics(per, likelihood_scores(args.lm or sft, per, how))
                log(f"likelihood-{how} {k}: " + " ".join(f"{a}={b:.3f}" for a, b in m.items()))
        return
    samples = []
    if "base" in args.data:
        base = load(db, "base,T=1", "%sft%")
        samples += [(p, c, y, pid) for pid, ss in base.items() for p, c, y in ss]
    for f in args.fresh.split(",") if args.fresh else []:
        rows_ = json.load(open(f))[: args.fresh_n or None]
        samples += [tuple(r) for r in rows_]
    if args.synth:
        test_keys = [tuple(T.parse_prompt(ss[0][0])) for ss in load(db, final, "%test%").values()]
        samples += synth(args.synth, args.seed, test_keys)
    ys = [s[2] for s in samples]
    log(f"train samples {len(samples)} correct {sum(ys)}")
    tok = TT.toy_tokenizer()
    init = {"final": sft, "scratch": None}.get(args.init, args.init)
    torch.manual_seed(args.seed)
    cfg = ToyVerifierConfig(seed=args.seed)
    model = toy_classifier(tok, cfg, init)
    if args.extra:
        from transformers.models.gpt2.modeling_gpt2 import GPT2Block

        n0 = model.config.n_layer
        model.config.n_layer = n0 + args.extra
        for i in range(args.extra):
            blk = GPT2Block(model.config, layer_idx=n0 + i)
            torch.nn.init.zeros_(blk.attn.c_proj.weight)
            torch.nn.init.zeros_(blk.mlp.c_proj.weight)
            model.transformer.h.append(blk)
    if args.freeze:
        for n_, p_ in model.named_parameters():
            if not (
                n_.startswith("score")
                or any(
                    n_.startswith(f"transformer.h.{j}.")
                    for j in range(model.config.n_layer - args.extra, model.config.n_layer)
                )
                or n_.startswith("transformer.ln_f")
            ):
                p_.requires_grad_(False)
    ver = OutcomeRewardModel(model, tok, template="plain", workers=None)
    Rows.target = args.target
    rows = Rows(ver, samples)
    tt = train(ver, rows, args, log)
    st = 0
    for k in args.eval.split(","):
        sc, dt = score(ver, evals[k])
        st += dt
        m = metrics(evals[k], sc)
        log(f"{k}: " + " ".join(f"{a}={b:.3f}" for a, b in m.items()) + f" score_s={dt:.1f}")
    if args.diag:
        diag(ver, train.aux, [tuple(r) for r in json.load(open(args.diag))], log)
        diag(ver, train.aux, samples[:800], log)
    log(f"train_cpu_s={tt:.1f} score_cpu_s={st:.1f} cfg={vars(args)}")


if __name__ == "__main__":
    main()
