"""Read an export with the harnesses' own code (run in a subprocess with `.harness/` on the path; see
`make harness-readers`) and print what they see as JSON.

    python harness_readers.py lm-eval DIR     lm-eval's file-name helpers, its hash, and `datasets`'
                                              JSON loader (lm-eval sanitises its lines for it)
    python harness_readers.py lighteval DIR   lighteval's details lookup (as `load_details_datasets`
                                              does it), `datasets`' parquet loader, and its Doc and
                                              ModelResponse dataclasses rebuilt from each row
"""

import json
import sys
from pathlib import Path


def _load(kind: str, path: Path):
    from datasets import load_dataset

    return load_dataset(kind, data_files=str(path), split="train")


def lm_eval(root: Path) -> dict:
    from lm_eval.utils import (
        get_file_datetime,
        get_file_task_name,
        get_latest_filename,
        get_results_filenames,
        get_sample_results_filenames,
        handle_non_serializable,
        hash_string,
    )

    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    files = [f"{root.name}/{f}" for f in files]  # as the Hub lists them: model/file under a root
    out = {"results": get_results_filenames(files), "samples": []}
    for f in get_sample_results_filenames(files):
        name = Path(f).name
        rows = list(_load("json", root / Path(f).relative_to(root.name)))
        hashes_ok = all(
            row["doc_hash"] == hash_string(json.dumps(row["doc"], indent=2, default=handle_non_serializable,
                                                      ensure_ascii=False))
            and row["prompt_hash"] == hash_string(row["arguments"]["gen_args_0"]["arg_0"])
            and row["target_hash"] == hash_string(str(row["target"]))
            for row in rows
        )  # fmt: skip
        out["samples"].append({
            "model": Path(f).parent.name, "task": get_file_task_name(name), "date": get_file_datetime(name),
            "latest": get_latest_filename([name]), "hashes_ok": hashes_ok, "rows": rows,
        })  # fmt: skip
    return out


def lighteval(root: Path) -> dict:
    from lighteval.models.model_output import ModelResponse
    from lighteval.tasks.requests import Doc

    out = {
        "details": [],
        "results": sorted(p.relative_to(root).as_posix() for p in (root / "results").rglob("*.json")),
    }
    for model_dir in sorted((root / "details").iterdir()):
        date_id = max(p.name for p in model_dir.iterdir() if p.is_dir())  # date_id "last"
        for file in sorted((model_dir / date_id).glob(f"details_*_{date_id}.parquet")):
            task_name = file.stem.replace("details_", "").replace(f"_{date_id}", "")
            docs = []
            for row in _load("parquet", file):
                doc, response = Doc(**row["doc"]), ModelResponse(**row["model_response"])
                docs.append({
                    "query": doc.query, "golds": doc.get_golds(), "id": doc.id, "task_name": doc.task_name,
                    "num_samples": doc.num_samples, "specific": doc.specific, "input": response.input,
                    "text": response.final_text, "metric": row["metric"],
                })  # fmt: skip
            out["details"].append({"model": model_dir.name, "date": date_id, "task": task_name, "docs": docs})
    return out


if __name__ == "__main__":
    fmt, root = sys.argv[1], Path(sys.argv[2])
    print(json.dumps((lm_eval if fmt == "lm-eval" else lighteval)(root), default=str))
