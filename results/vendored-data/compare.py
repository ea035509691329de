"""Are two quickstart runs' results the same number for number? (issue 31: vendored data vs ../shared/data)

    python results/vendored-data/compare.py RUN_A/results.jsonl RUN_B/results.jsonl

Each record is compared with its counterpart field by field, leaving out only what names the run rather than
the result: ``time`` (when it was written) and ``stage`` / ``model_path`` (stage directory ids, which hash the
data directory's absolute path on purpose: a run on another directory never reuses a stage). Prints the count
of records, the fields compared and every difference; exits 1 on any.
"""

from __future__ import annotations

import json
import sys

RUN_NAMING = ("time", "stage", "model_path")


def rows(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def key(row: dict) -> str:
    return json.dumps({k: v for k, v in row.items() if k not in RUN_NAMING and k not in ("value", "n")},
                      sort_keys=True)


def main(a_path: str, b_path: str) -> int:
    a, b = rows(a_path), rows(b_path)
    ka, kb = {key(r): r for r in a}, {key(r): r for r in b}
    diffs = [f"only in {a_path}: {k}" for k in ka.keys() - kb.keys()]
    diffs += [f"only in {b_path}: {k}" for k in kb.keys() - ka.keys()]
    for k in ka.keys() & kb.keys():
        for field in ("value", "n"):
            if ka[k].get(field) != kb[k].get(field):
                diffs.append(f"{k}: {field} {ka[k].get(field)!r} != {kb[k].get(field)!r}")
    fields = sorted({f for r in a for f in r} - set(RUN_NAMING))
    print(f"{len(a)} vs {len(b)} records; compared fields: {', '.join(fields)}; left out: {', '.join(RUN_NAMING)}")
    print("\n".join(diffs) if diffs else "identical: every record, value and n")
    return 1 if diffs or len(a) != len(b) else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
