"""Checkpoint I/O: safetensors headers, lazy per-tensor reads, the sharded atomic writer, provenance."""

from wiseft.checkpoints.checkpoint import TOKENIZER_FILES, Checkpoint, validate_model_dir
from wiseft.checkpoints.content import ContentHash, TensorDigest, content_hash, model_fingerprint
from wiseft.checkpoints.discovery import find_checkpoints, is_complete
from wiseft.checkpoints.hub import resolve
from wiseft.checkpoints.loading import load_causal_lm, load_tokenizer
from wiseft.checkpoints.safetensors_format import DTYPES, TensorInfo, read_header
from wiseft.checkpoints.writer import DEFAULT_SHARD_SIZE, ShardWriter, parse_size, plan_shards

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "DTYPES",
    "TOKENIZER_FILES",
    "Checkpoint",
    "ContentHash",
    "ShardWriter",
    "TensorDigest",
    "TensorInfo",
    "content_hash",
    "find_checkpoints",
    "is_complete",
    "load_causal_lm",
    "load_tokenizer",
    "model_fingerprint",
    "parse_size",
    "plan_shards",
    "read_header",
    "resolve",
    "validate_model_dir",
]
