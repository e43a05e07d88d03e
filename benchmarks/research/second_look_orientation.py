"""Search's second look in one orientation: does trying the other one ever change a verdict?

``geometry.check_copy`` (search's tier check on stored features) used to try the coarse corners of
the query and of its mirror whenever the fine corners left a near-duplicate score unconfirmed:
two more ORB passes on every query that met another shot of an object (~3 ms each). It now
tries only the orientation the fine corners favoured. This script decides every pair the check
sees in DEV, the harder edits, the turned copies and the other shots (``copy_compare.load_sets``)
with ``geometry`` as committed at a git revision (default ``4777d23``: the last version that tried both)
and as it is in the working tree, through ``search.verified_tier``, and counts the verdicts that differ.

    python benchmarks/research/second_look_orientation.py [--before 4777d23]
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
    parser.add_argument("--before", default="4777d23", help="git revision of geometry.py to compare against (default: the last that tried both)")
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
                said[name] = thresholds.is_match(score, tier)
                correct[name] += int(said[name] == bool(label))
            if said["before"] != said["now"]:
                differ.append(kind)
        search.check_copy = geometry.check_copy
        rows.append([pairs.name, checked, correct["before"], correct["now"], len(differ), ", ".join(differ) or "-"])
        print(rows[-1], file=sys.stderr, flush=True)
    body = ("Pairs the tier check sees (score near or above the `similar` line), decided by search's "
            "`verified_tier` with the second look in both orientations (before) and in the one the fine "
            "corners favoured (now).\n\n"
            + markdown_table(["set", "pairs checked", "right before", "right now", "verdicts that differ",
                              "their kinds"], rows))
    write_result("second_look_orientation", "Search's second look: one orientation or both", body,
                 f"python benchmarks/research/second_look_orientation.py --before {args.before}",
                 folder=Path(__file__).resolve().parent / "results")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
