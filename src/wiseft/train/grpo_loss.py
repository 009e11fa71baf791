"""The GRPO objective as TRL 1.16's `GRPOTrainer` defines it, written as small pure functions.

One policy update per batch of samples (TRL's `num_iterations=1`): the importance ratio
``exp(logp − logp.detach())`` is 1 in value, so PPO's clipping never binds, and the gradient is
``−A ∇logp`` plus β times the gradient of the KL estimate. Definitions (DeepSeekMath's GRPO, as TRL):

- advantage of completion i of a group: ``A_i = (r_i − mean_group r) / (std_group r + 1e-4)``
  (`scale="group"`, std with Bessel's correction), or divided by the batch's std (`"batch"`), or not
  divided (`"none"`, Dr. GRPO);
- per-token KL estimate against the reference: ``k3 = exp(ref − logp) − (ref − logp) − 1``;
- per-token loss ``−ratio·A + β·ratio·k3`` (the ratio on the KL term is TRL's default
  `use_bias_correction_kl`: 1 in value, it makes the KL gradient the unbiased reverse-KL gradient of
  DeepSeek-V3.2), reduced as `loss_type` says over the completion tokens:
  ``"dapo"`` sum / tokens in the batch (TRL's default), ``"grpo"`` mean over each completion then over
  completions, ``"dr_grpo"`` sum / (completions × max completion length).

Every reduction is a sum over rows divided by a count of the whole batch, so a batch split into parts
gives parts whose losses (and gradients) add up to the whole batch's: `part_loss` takes the batch totals.
Log-probabilities are of temperature-scaled logits, as TRL computes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

LOSS_TYPES = ("dapo", "grpo", "dr_grpo")
SCALES = ("group", "batch", "none")
STD_EPS = 1e-4


def _std(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Standard deviation with Bessel's correction (TRL's `nanstd` without NaNs)."""
    if dim is None:
        return x.std(unbiased=True) if x.numel() > 1 else torch.zeros((), dtype=x.dtype)
    return x.std(dim=dim, unbiased=True)


def advantages(rewards: torch.Tensor, group: int, scale: str = "group") -> tuple[torch.Tensor, torch.Tensor]:
    """(advantage per completion, whether each group's rewards all equal) for rewards in group order."""
    grouped = rewards.view(-1, group)
    mean = grouped.mean(dim=1, keepdim=True)
    group_std = _std(grouped, dim=1)
    centred = (grouped - mean).reshape(-1)
    if scale == "group":
        out = centred / (group_std.repeat_interleave(group) + STD_EPS)
    elif scale == "batch":
        out = centred / (_std(rewards) + STD_EPS)
    elif scale == "none":
        out = centred
    else:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    zero_std = torch.isclose(group_std, torch.zeros_like(group_std))
    return out, zero_std


def token_logps(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """log p(target) under softmax(logits / temperature); logits (B, T, V), targets (B, T)."""
    scaled = logits.float()
    if temperature not in (0.0, 1.0):
        scaled = scaled / temperature
    return torch.log_softmax(scaled, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def kl_k3(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(policy ‖ reference) from the sampled tokens (Schulman's k3)."""
    diff = ref_logps - logps
    return torch.exp(diff) - diff - 1


@dataclass(frozen=True)
class BatchTotals:
    """Counts of the whole batch that every part's loss is divided by."""

    rows: int
    tokens: int
    max_completion_length: int


def part_loss(
    logps: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    totals: BatchTotals,
    loss_type: str = "dapo",
    beta: float = 0.0,
    ref_logps: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(this part's share of the batch loss, its summed per-token KL or None) for rows of one part.

    logps, ref_logps, mask: (rows, T) over completion tokens (mask 1 on real tokens); adv: (rows,).
    """
    ratio = torch.exp(logps - logps.detach())
    per_token = -ratio * adv.unsqueeze(1)
    kl = None
    if beta != 0.0:
        if ref_logps is None:
            raise ValueError("beta != 0 needs the reference model's log-probabilities")
        k3 = kl_k3(logps, ref_logps)
        per_token = per_token + beta * k3 * ratio  # TRL's use_bias_correction_kl (its default)
        kl = (k3 * mask).sum().detach()
    mask = mask.to(per_token.dtype)
    if loss_type == "dapo":
        loss = (per_token * mask).sum() / max(1, totals.tokens)
    elif loss_type == "grpo":
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).sum() / max(1, totals.rows)
    elif loss_type == "dr_grpo":
        loss = (per_token * mask).sum() / max(1, totals.rows * totals.max_completion_length)
    else:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    return loss, kl


def completion_logps(model, rows, pad: int, device, temperature: float):
    """(log-probabilities of each row's completion tokens under `model` at `temperature`, their mask),
    both (rows, longest completion), for rows of (prompt ids, completion ids)."""
    ids, attn, pos, targets, mask = pack_rows(rows, pad, device)
    keep = targets.shape[1] + 1  # the last prompt position predicts the first completion token
    logits = model(input_ids=ids, attention_mask=attn, position_ids=pos, logits_to_keep=keep).logits
    return token_logps(logits[:, :-1], targets, temperature), mask


def pack_rows(rows, pad: int, device):
    """Tensors of one part: [prompt left-padded | completion right-padded] per row, targets and mask over
    the completion columns. Without left padding no attention mask is needed (causal attention never lets
    a real token see the pads after it), and none is given: the model takes its fast causal path."""
    width_p = max(len(p) for p, _ in rows)
    width_c = max(len(c) for _, c in rows)
    ids = torch.full((len(rows), width_p + width_c), pad, dtype=torch.long)
    attn = torch.zeros_like(ids)
    targets = torch.full((len(rows), width_c), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width_c), dtype=torch.float32)
    for r, (p, c) in enumerate(rows):
        ids[r, width_p - len(p) : width_p] = torch.tensor(p)
        ids[r, width_p : width_p + len(c)] = torch.tensor(c)
        attn[r, width_p - len(p) : width_p + len(c)] = 1
        targets[r, : len(c)] = torch.tensor(c)
        mask[r, : len(c)] = 1.0
    if all(len(p) == width_p for p, _ in rows):
        attn = pos = None
    else:
        pos = (attn.cumsum(-1) - 1).clamp(min=0).to(device)
        attn = attn.to(device)
    return ids.to(device), attn, pos, targets.to(device), mask.to(device)
