"""``lookalike eval pairs|groups`` and ``lookalike calibrate``: thin adapters over evaluation,
baselines, calibration and plots. Heavy imports happen inside the commands."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from lookalike.quality.baselines import lookalike_scorer
from lookalike.cli.common import ModelOpt, SizeOpt, console, fail, progress
from lookalike.errors import LookalikeError

eval_app = typer.Typer(help="Measure accuracy on labelled pairs or view groups.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object with the summary metrics only")]
BaselineOpt = Annotated[
    list[str] | None, typer.Option("--baseline", "-b", help="also score with phash and/or seed (repeatable)")
]
PlotOpt = Annotated[Path | None, typer.Option("--plot", help="write ROC / histogram / P-R PNGs to this folder")]



def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


@eval_app.command("pairs")
def eval_pairs(
    pairs_csv: Annotated[Path, typer.Argument(help="CSV with path_a,path_b,label[,kind]; paths relative to it")],
    model: ModelOpt = None,
    size: SizeOpt = None,
    as_json: JsonOpt = False,
    plot: PlotOpt = None,
    baseline: BaselineOpt = None,
    threshold: Annotated[float | None, typer.Option(help="judge at this score instead of the calibrated one")] = None,
    geometry: Annotated[bool | None, typer.Option(
        "--geometry/--no-geometry", help="judge lookalike's verdicts as the service gives them: the score line "
        "plus the geometric check (default: the geometric_check setting); AUC/AP rank the score that decides "
        "copies: the copy detector's (setting copy_model) unless it is none or --threshold is given")] = None,
) -> None:
    """ROC-AUC, average precision, best-F1 threshold and P/R/F1 at the threshold in force, per kind too."""
    from lookalike.quality.baselines import baseline_scorer
    from lookalike.config import get_settings
    from lookalike.comparison import copy_detector
    from lookalike.embed import create_embedder
    from lookalike.quality.evaluation import (
        cosine_pair_scores,
        embed_paths,
        load_pairs,
        pair_metrics,
        service_decisions,
    )
    from lookalike.imaging import ImageLimits
    from lookalike.similarity import Thresholds

    settings = get_settings()
    use_geometry = settings.geometric_check if geometry is None else geometry
    try:
        pairs = load_pairs(pairs_csv)
        with progress("loading the model (its first use exports it to ONNX)", quiet=as_json):
            main, thresholds = lookalike_scorer(model, size, settings)
            # the copy detector decides copies as in compare (a fixed --threshold judges the score alone)
            copy = None if threshold is not None else copy_detector(
                lambda name: create_embedder(name, settings=settings), settings)
        if threshold is not None:
            main.threshold = threshold
            thresholds = Thresholds(threshold, min(threshold, thresholds.near_duplicate),
                                    min(threshold, thresholds.similar), "--threshold")
        if copy is not None:
            main.name += f" + {copy.embedder.model_name} copy detector"
            main.threshold = copy.lines.sure  # on the copy score's scale: a copy by the score alone
        if use_geometry:
            main.name += " + geometric check"
        scorers = [main, *(baseline_scorer(b, settings) for b in (baseline or []))]
        results = []
        for n, scorer in enumerate(scorers, 1):
            with progress(f"[{n}/{len(scorers)}] scoring {len(pairs)} pairs with {escape(scorer.name)}",
                          quiet=as_json) as update:
                scores = scorer.pair_scores(pairs.path_a, pairs.path_b)
                decisions = None
                if scorer is main and copy is not None:
                    update(description=f"[{n}/{len(scorers)}] copy scores of {len(pairs)} pairs")
                    vectors = embed_paths(copy.embedder, pairs.unique_paths())
                    copy_scores = cosine_pair_scores(vectors, pairs.path_a, pairs.path_b)
                    decisions = service_decisions(pairs.path_a, pairs.path_b, scores, thresholds,
                                                  ImageLimits.from_settings(settings),
                                                  main.embedder.preprocessing.decode_side,
                                                  copy_scores=copy_scores, copy_lines=copy.lines,
                                                  geometry=use_geometry)
                    scores = copy_scores  # AUC/AP rank the score that decides copies
                elif scorer is main and use_geometry:
                    update(description=f"[{n}/{len(scorers)}] geometric check of {len(pairs)} pairs")
                    decisions = service_decisions(pairs.path_a, pairs.path_b, scores, thresholds,
                                                  ImageLimits.from_settings(settings),
                                                  main.embedder.preprocessing.decode_side)
            results.append((scorer, scores, pair_metrics(scores, pairs.labels, scorer.threshold, pairs.kinds,
                                                         decisions)))
    except LookalikeError as exc:
        fail(exc)
    if plot is not None:
        from lookalike.quality.plots import curves_from_scores, write_plots

        for i, (scorer, scores, metrics) in enumerate(results):
            prefix = "" if i == 0 else f"{scorer.name.split()[0]}_"
            write_plots(plot, curves_from_scores(scores, pairs.labels), scorer.threshold, prefix, scorer.name)
    if as_json:
        print(json.dumps(results[0][2].summary()))
        return
    table = Table(title=escape(f"{pairs_csv.name} — {len(pairs)} pairs ({int(pairs.labels.sum())} same)"))
    for column in ("method", "ROC-AUC", "AP", "best F1", "best thr", "threshold", "P", "R", "F1@thr"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for scorer, _, m in results:
        table.add_row(escape(scorer.name), _fmt(m.roc_auc), _fmt(m.average_precision), _fmt(m.best_f1, 3),
                      _fmt(m.best_threshold), _fmt(m.threshold), _fmt(m.precision_at_threshold, 3),
                      _fmt(m.recall_at_threshold, 3), _fmt(m.f1_at_threshold, 3))
    console.print(table)
    console.print(f"threshold in force: {thresholds.match:.4f} ({escape(thresholds.source)})")
    if copy is not None:
        console.print(f"copies decided by {copy.embedder.model_name}: sure >= {copy.lines.sure:.4f}, the geometric "
                      f"check from {copy.lines.candidate:.4f} ({escape(copy.lines.source)})")
    kinds = Table(title="per kind: share judged right at each method's threshold (AUC vs all negatives)")
    kinds.add_column("kind")
    kinds.add_column("n", justify="right")
    for scorer, _, _ in results:
        kinds.add_column(scorer.name.split(" (")[0], justify="right")
    for i, k in enumerate(results[0][2].per_kind):
        cells = []
        for _, _, m in results:
            km = m.per_kind[i]
            cells.append(_fmt(km.correct_at_threshold, 3) + (f" ({_fmt(km.roc_auc, 3)})" if km.roc_auc is not None else ""))
        kinds.add_row(k.kind, str(k.n), *cells)
    console.print(kinds)


@eval_app.command("groups")
def eval_groups(
    groups_csv: Annotated[Path, typer.Argument(help="CSV with path,group; paths relative to it")],
    model: ModelOpt = None,
    size: SizeOpt = None,
    as_json: JsonOpt = False,
    baseline: BaselineOpt = None,
    rerank: Annotated[int | None, typer.Option(
        min=0, help="re-rank each query's top N by local features, as catalog search does "
        "(default: the search_rerank_top setting; 0: embedding order only)")] = None,
) -> None:
    """Leave-one-out retrieval: Recall@1, Recall@4, mAP and the UKBench N-S score."""
    from lookalike.quality.baselines import baseline_scorer
    from lookalike.config import get_settings
    from lookalike.quality.evaluation import group_metrics_from_similarity, load_groups, rerank_similarity

    settings = get_settings()
    top = settings.search_rerank_top if rerank is None else rerank
    if not settings.geometric_check:
        top = 0
    try:
        groups = load_groups(groups_csv)
        with progress("loading the model (its first use exports it to ONNX)", quiet=as_json):
            main, _ = lookalike_scorer(model, size, settings)
        if top:
            main.name += f" + local re-rank of top {top}"
        scorers = [main, *(baseline_scorer(b, settings) for b in (baseline or []))]
        results = []
        for n, scorer in enumerate(scorers, 1):
            with progress(f"[{n}/{len(scorers)}] embedding {len(groups.paths)} images with {escape(scorer.name)}",
                          quiet=as_json) as update:
                similarity = scorer.similarity_matrix(groups.paths)
                if scorer is main and top:
                    update(description=f"[{n}/{len(scorers)}] re-ranking each query's top {top} by local features")
                    similarity = rerank_similarity(similarity, groups.paths, top, main.embedder.limits,
                                                   main.embedder.preprocessing.decode_side)
            results.append((scorer, group_metrics_from_similarity(similarity, groups.groups)))
    except LookalikeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(results[0][1].summary()))
        return
    table = Table(title=escape(f"{groups_csv.name} — {len(groups.paths)} images in {results[0][1].n_groups} groups"))
    for column in ("method", "Recall@1", "Recall@4", "mAP", "N-S"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for scorer, m in results:
        table.add_row(escape(scorer.name), _fmt(m.recall_at_1, 3), _fmt(m.recall_at_4, 3), _fmt(m.map, 3), _fmt(m.ns_score, 2))
    console.print(table)


def calibrate(
    pairs_csv: Annotated[Path | None, typer.Argument(help="labelled pairs CSV (path_a,path_b,label[,kind])")] = None,
    model: ModelOpt = None,
    size: SizeOpt = None,
    target_precision: Annotated[
        float | None, typer.Option(help="lowest threshold reaching this precision instead of best F1")
    ] = None,
    groups: Annotated[
        Path | None, typer.Option(help="groups CSV for the 'similar' tier (default: groups.csv beside the pairs)")
    ] = None,
    from_feedback: Annotated[bool, typer.Option("--from-feedback", help="add the pairs stored by POST /v1/feedback")] = False,
    out: Annotated[Path | None, typer.Option(help="calibration file to update (default: config calibration_file)")] = None,
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Pick match / near_duplicate / similar thresholds from labelled pairs and store them."""
    from lookalike.quality.calibration import calibrate_embedder
    from lookalike.config import get_settings
    from lookalike.embed import create_embedder

    settings = get_settings()
    target = out or settings.calibration_file
    if target is None:
        fail(LookalikeError("say where to write the thresholds: --out FILE, or set calibration_file "
                            "(LOOKALIKE_CALIBRATION_FILE or the config file)", code="no_calibration_file"))
    if pairs_csv is None and not from_feedback:
        fail(LookalikeError("nothing to calibrate from: give a pairs CSV (path_a,path_b,label[,kind]), "
                            "--from-feedback, or both", code="no_pairs"))
    try:
        with progress("loading the model (its first use exports it to ONNX)", quiet=as_json) as update:
            embedder = create_embedder(model, input_size=size, settings=settings)
            update(description=f"calibrating {embedder.model_name}@{embedder.input_size}: scoring the pairs")
            calibration = calibrate_embedder(embedder, pairs_csv, groups_csv=groups, target_precision=target_precision,
                                             feedback=settings if from_feedback else None, pooling=settings.pooling)
            from lookalike.catalog.dedup import is_copy_detector

            copy_lines = []
            if pairs_csv is not None and is_copy_detector(embedder.model_name):
                from lookalike.imaging import ImageLimits
                from lookalike.quality.calibration import calibrate_copy_lines

                update(description=f"copy lines of {embedder.model_name}: the geometric check on the pairs")
                copy_lines.append(calibrate_copy_lines(embedder, pairs_csv, match=calibration.match, groups_csv=groups,
                                                       limits=ImageLimits.from_settings(settings)))
        from lookalike.quality.calibration import write_calibration

        path = write_calibration(target, [calibration], copy_lines)
    except LookalikeError as exc:
        fail(exc)
    if plot is not None:
        from lookalike.quality.plots import write_plots

        write_plots(plot, calibration.curves, calibration.match, title=calibration.key)
    if as_json:
        extra = {"copy_lines": copy_lines[0].entry()} if copy_lines else {}
        print(json.dumps({"key": calibration.key, **calibration.entry(), **extra, "file": str(path)}))
        return
    console.print(f"[bold]{escape(calibration.key)}[/bold]: match {calibration.match:.4f} ({calibration.method}), "
                  f"near_duplicate {calibration.near_duplicate:.4f}, similar {calibration.similar:.4f} "
                  f"from {calibration.n_pairs} pairs -> {escape(str(path))}")
    m = calibration.metrics
    console.print(f"  ROC-AUC {_fmt(m.get('roc_auc'))}  AP {_fmt(m.get('average_precision'))}  "
                  f"P {_fmt(m.get('precision_at_threshold'), 3)}  R {_fmt(m.get('recall_at_threshold'), 3)}  "
                  f"F1 {_fmt(m.get('f1_at_threshold'), 3)}")
    for lines in copy_lines:
        console.print(f"  copy lines: a copy from {lines.sure:.4f}, the geometric check from {lines.candidate:.4f} "
                      f"(F1 {lines.metrics['f1']:.3f}, {lines.metrics['checked_share']:.0%} of pairs checked)")


def register(app: typer.Typer) -> None:
    """One line in cli.py: ``eval`` sub-commands and ``calibrate``."""
    app.add_typer(eval_app, name="eval")
    app.command("calibrate")(calibrate)
