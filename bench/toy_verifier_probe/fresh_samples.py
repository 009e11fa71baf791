"""fresh_samples.py CKPT OUT.json N_PROBLEMS PER SEED: samples (T=1) of a checkpoint on fresh clean problems,
none a test or SFT problem of the demo (data seed 5, 96 SFT / 400 test), graded; round 7 of docs/TOY-LOG.md."""

import json
import random
import sys
import time

import torch
from transformers import AutoModelForCausalLM

from wiseft.tasks import toy as T
from wiseft.train import toy as TT

ckpt, out, n_prob, per, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(1)
splits = T.make_splits(5, 96, 400)
excl = {p.numbers for p in splits.test} | {p.numbers for p in splits.sft}
rng = random.Random(f"fresh-{seed}")
probs = []
while len(probs) < n_prob:
    nums = tuple(rng.randint(10, 99) for _ in range(4))
    if nums not in excl and nums not in {p for p in probs}:
        probs.append(nums)
tok = TT.toy_tokenizer()
lm = AutoModelForCausalLM.from_pretrained(ckpt).eval()
end = tok.convert_tokens_to_ids("$")
torch.manual_seed(seed)
rows = []
t0 = time.process_time()
with torch.inference_mode():
    for nums in probs:
        prompt = T.prompt_text(nums)
        ids = torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]] * per)
        g = lm.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_new_tokens=16,
            eos_token_id=end,
            pad_token_id=tok.pad_token_id,
        )
        for row in g[:, ids.shape[1] :].tolist():
            text = "".join(tok.convert_ids_to_tokens([t for t in row if t != tok.pad_token_id]))
            comp = text.split("$")[0]
            rows.append([prompt, comp, T.extract_answer(comp) == str(sum(nums)), "fresh" + prompt])
json.dump(rows, open(out, "w"))
print(len(rows), sum(r[2] for r in rows), "cpu", time.process_time() - t0)
