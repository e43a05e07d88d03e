"""Search's tier check changed: does any verdict change? (a speed change must not move one)

Decides every pair search's tier check sees in DEV, the harder edits, the turned copies and the
other shots (``copy_compare.load_sets``) through ``search.verified_tier``, with ``geometry`` as
committed at a git revision and as it is in the working tree, and counts the verdicts that differ
and how many each got right.

Records made with it (``results/``):

- ``second_look_orientation.md`` (``--before 4777d23``): the second look tries only the
  orientation the fine corners favoured, not both (two ORB passes fewer on a query that meets
  another shot of an object): no verdict changed on 2,024 checked pairs.
- ``mirrored_corners.md`` (``--before f95bd36``): the query's mirrored corners are its own
  corners at their mirrored places, with ORB's descriptor computed there (no second detection
  pass). Also tried then and not kept: skipping the mirror and the second look once the fine
  corners fitted 20 corners that do not line up (it lost a mirrored copy of a symmetric scene and
  saved no measurable CPU: the query's coarse corners were still made for another hit).

    python benchmarks/research/tier_check_changes.py --before REV --name RESULT_NAME
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import copy_compare  # noqa: E402
from _common import REPO, bench_settings, markdown_table, write_result  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision of geometry.py to compare against")
    parser.add_argument("--name", required=True, help="results/NAME.md to write")
    args = parser.parse_args(argv)

    import lookalike.catalog.search as search
    from lookalike import geometry
    from lookalike.embed import create_embedder
    from lookalike.similarity import normalized_score, thresholds_for

    source = subprocess.run(["git", "show", f"{args.before}:src/lookalike/geometry.py"], capture_output=True,
                            text=True, check=True, cwd=REPO).stdout
    before = types.ModuleType("geometry_before")
    sys.modules["geometry_before"] = before
    exec(compile(source, "geometry_before", "exec"), before.__dict__)  # noqa: S102 - our own file at a revision
    settings = bench_settings()
    embedder = create_embedder(settings.default_model, settings=settings)
    thresholds = thresholds_for(embedder.model_name, embedder.input_size, settings)
    rows = []
    for pairs in copy_compare.load_sets():
        paths = sorted({str(p) for p in (*pairs.a, *pairs.b)})
        images = {p: embedder.load(p) for p in paths}
        vectors = dict(zip(paths, embedder.encode_decoded([images[p] for p in paths])))
        stored: dict[str, bytes] = {}
        checked, correct, differ = 0, {"before": 0, "now": 0}, []
        for a, b, label, kind in zip(map(str, pairs.a), map(str, pairs.b), pairs.labels, pairs.kinds):
            score = float(normalized_score(float(vectors[a] @ vectors[b])))
            if not geometry.needs_check(score, thresholds, thresholds.tier(score)):
                continue
            checked += 1
            stored.setdefault(b, geometry.features_for(images[b]))
            said = {}
            for name, module in (("before", before), ("now", geometry)):
                search.check_copy = module.check_copy
                tier = search.verified_tier(module.QueryFeatures(images[a]), module.unpack_features(stored[b]),
                                            score, thresholds)
                said[name] = tier
                correct[name] += int(thresholds.is_match(score, tier) == bool(label))
            if said["before"] != said["now"]:
                differ.append(f"{kind} ({said['before'].value} -> {said['now'].value})")
        search.check_copy = geometry.check_copy
        rows.append([pairs.name, checked, correct["before"], correct["now"], len(differ), ", ".join(differ) or "-"])
        print(rows[-1], file=sys.stderr, flush=True)
    body = ("Pairs the tier check sees (score near or above the `similar` line), decided by search's "
            f"`verified_tier` with `geometry.py` at `{args.before}` (before) and as in the working tree (now).\n\n"
            + markdown_table(["set", "pairs checked", "right before", "right now", "verdicts that differ",
                              "their kinds"], rows))
    write_result(args.name, "Search's tier check: verdicts before and after a change", body,
                 f"python benchmarks/research/tier_check_changes.py --before {args.before} --name {args.name}",
                 folder=Path(__file__).resolve().parent / "results")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
