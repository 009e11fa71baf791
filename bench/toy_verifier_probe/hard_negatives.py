"""hard_negatives.py CKPT OUT.json N_PROBLEMS NEGS SEED: gold chains of fresh problems (none a test or SFT
problem of the demo) and NEGS one-digit errors each, drawn in proportion to the checkpoint's probability of
the wrong digit and carried forward; round 7 of docs/TOY-LOG.md."""

import json
import random
import sys
import time

import torch
from transformers import AutoModelForCausalLM

from wiseft.tasks import toy as T
from wiseft.train import toy as TT

ckpt, out, n_prob, negs, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(1)
splits = T.make_splits(5, 96, 400)
excl = {p.numbers for p in splits.test} | {p.numbers for p in splits.sft}
rng = random.Random(f"hard-{seed}")
probs, seen = [], set()
while len(probs) < n_prob:
    nums = tuple(rng.randint(10, 99) for _ in range(4))
    if nums not in excl and nums not in seen:
        seen.add(nums)
        probs.append(nums)
tok = TT.toy_tokenizer()
lm = AutoModelForCausalLM.from_pretrained(ckpt).eval()
digit_ids = [tok.convert_tokens_to_ids(str(d)) for d in range(10)]
t0 = time.process_time()
rows = []
texts = [(T.prompt_text(n), T.completion_text(T.partial_sums(n))[:-1]) for n in probs]
with torch.inference_mode():
    for b in range(0, len(texts), 256):
        chunk = texts[b : b + 256]
        enc = [tok(p + c, add_special_tokens=False)["input_ids"] for p, c in chunk]
        W = max(map(len, enc))
        ids = torch.tensor([e + [tok.pad_token_id] * (W - len(e)) for e in enc])
        probs_ = torch.softmax(lm(ids).logits.float(), -1)
        for k, (p, c) in enumerate(chunk):
            nums = T.parse_prompt(p)
            rows.append([p, c, True, "hard" + p])
            cands = []
            for j, ch in enumerate(c):
                if not ch.isdigit():
                    continue
                pos = len(p) + j - 1  # predicts char j
                for d in range(10):
                    if str(d) != ch:
                        cands.append((float(probs_[k, pos, digit_ids[d]]), j, str(d)))
            cands.sort(reverse=True)
            wts = [w for w, _, _ in cands]
            for _ in range(negs):
                w, j, d = rng.choices(cands, weights=wts)[0]
                # replace digit j, then carry the error forward
                fields = c.split(",")
                fi = c[:j].count(",")
                off = j - (c[:j].rfind(",") + 1)
                f = fields[fi]
                f = f[:off] + d + f[off + 1 :]
                fields[fi] = f
                acc = int(f[::-1])
                for i in range(fi + 1, len(fields)):
                    acc += nums[i + 1]
                    fields[i] = T.rev(acc)
                comp = ",".join(fields)
                rows.append([p, comp, T.extract_answer(comp) == str(sum(nums)), "hard" + p])
json.dump(rows, open(out, "w"))
print(len(rows), sum(r[2] for r in rows), "cpu", time.process_time() - t0)
