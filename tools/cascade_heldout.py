"""The dev sentences a leave-domains-out fold's LLM never trained on, as a dataset root.

The cascade's calibration (:mod:`trainers.cascade_calibration`) must be fitted on predictions
the fold's components made on sentences they did not learn from, and never on the domains the
fold is scored on. A fold's IF-WRANER adapter trained on CoNLL-2003 train plus the dev splits
of its extra sources; of each extra dev split, :func:`trainers.wraner.prompts.split_source`
(deterministic, the config's seed) drew a retrieval pool and the training sentences. What is
left (and shares no text with them) is held out; CoNLL's dev split is held out whole.

    python -m tools.cascade_heldout --fold a --out runs/cascade-heldout-a

writes ``<out>/<domain>/heldout.txt`` (BIO, dev order) beside a copy of the domain's
``train.txt`` (the retrieval pool of ``nerve eval --split heldout --pool-split train``) and
``<out>/manifest.json`` (what was held out of what). CoNLL's pool is the first
``--conll-pool`` train sentences (indexing all 14k costs minutes for nothing). Fold B leaves
little (music 30, literature 50, ai 0 dev sentences): ``--with-pool`` also writes the
training prompts' example pools as ``<domain>/trainpool.txt``, a weaker hold-out.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nerve.data.readers import read_split, to_bio
from nerve.vocab.types import Example
from trainers.wraner.config import WranerConfig, load_config
from trainers.wraner.prompts import sources_of, split_source

CONFIGS = {
    "a": Path("trainers/configs/gemma3-270m-cpu-fold-a.yaml"),
    "b": Path("trainers/configs/gemma3-270m-cpu-fold-b.yaml"),
}
SPLIT = "heldout"
POOL_SPLIT = "trainpool"


def _key(text: str) -> str:
    return " ".join(text.split()).lower()


def heldout_of(
    config: WranerConfig,
) -> dict[str, tuple[list[Example], list[Example], int]]:
    """Per extra source domain: (held-out sentences in dev order, the retrieval pool the
    training prompts drew examples from, how many training sentences)."""
    out: dict[str, tuple[list[Example], list[Example], int]] = {}
    for source in sources_of(config)[1:]:
        examples = read_split(config.data_dir, source.domain, source.split)
        pool, queries = split_source(
            examples, source.pool_size, source.num_prompts, config.min_words, config.seed
        )
        seen = {id(e) for e in [*pool, *queries]}
        seen_text = {_key(e.text) for e in [*pool, *queries]}
        kept = [e for e in examples if id(e) not in seen and _key(e.text) not in seen_text]
        out[source.domain] = (kept, pool, len(queries))
    return out


def write_bio(path: Path, examples: Sequence[Example]) -> None:
    lines: list[str] = []
    for example in examples:
        lines += [f"{token}\t{tag}" for token, tag in to_bio(example)]
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_root(
    config: WranerConfig, out: Path, conll_sentences: int, conll_pool: int, with_pool: bool
) -> dict[str, Any]:
    manifest: dict[str, Any] = {"config_seed": config.seed, "domains": {}}
    data = Path(config.data_dir)
    for domain, (kept, pool, queries) in heldout_of(config).items():
        (out / domain).mkdir(parents=True, exist_ok=True)
        if kept:
            write_bio(out / domain / f"{SPLIT}.txt", kept)
        if with_pool:
            # Seen in training prompts as retrieved examples only, never as a target.
            write_bio(out / domain / f"{POOL_SPLIT}.txt", pool)
        (out / domain / "train.txt").write_text(
            (data / domain / "train.txt").read_text(encoding="utf-8"), encoding="utf-8"
        )
        manifest["domains"][domain] = {
            "heldout": len(kept),
            "pool": len(pool),
            "trained": queries,
            "pool_written": with_pool,
        }
    if conll_sentences > 0:
        main = config.domain
        dev = read_split(data, main, "dev")[:conll_sentences]
        (out / main).mkdir(parents=True, exist_ok=True)
        write_bio(out / main / f"{SPLIT}.txt", dev)
        write_bio(out / main / "train.txt", read_split(data, main, "train")[:conll_pool])
        manifest["domains"][main] = {
            "heldout": len(dev),
            "note": f"first {len(dev)} dev sentences (the adapter trained on train only); "
            f"pool = first {conll_pool} train sentences",
        }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.cascade_heldout", description=__doc__)
    parser.add_argument("--fold", choices=sorted(CONFIGS), required=True)
    parser.add_argument("--config", type=Path, help="A fold config (default: the fold's).")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--conll-sentences", type=int, default=200)
    parser.add_argument("--conll-pool", type=int, default=2000)
    parser.add_argument(
        "--with-pool",
        action="store_true",
        help=f"Also write the training prompts' example pool as <domain>/{POOL_SPLIT}.txt "
        "(seen as in-context examples, never as a target: a weaker hold-out).",
    )
    args = parser.parse_args(argv)
    config = load_config(args.config or CONFIGS[args.fold])
    manifest = write_root(config, args.out, args.conll_sentences, args.conll_pool, args.with_pool)
    json.dump(manifest, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
