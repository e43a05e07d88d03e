"""Metrics on inputs whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.quality.evaluation import (
    EvalDataError,
    best_f1_threshold,
    group_metrics,
    group_metrics_from_similarity,
    load_groups,
    load_pairs,
    pair_metrics,
    prf_at,
)


def test_perfectly_separated_pairs():
    scores = [0.95, 0.9, 0.85, 0.6, 0.5, 0.4]
    labels = [1, 1, 1, 0, 0, 0]
    m = pair_metrics(scores, labels, threshold=0.8, kinds=["pos_a", "pos_a", "pos_b", "neg", "neg", "neg"])
    assert m.roc_auc == 1.0 and m.average_precision == 1.0
    assert m.best_f1 == 1.0 and 0.6 < m.best_threshold < 0.85
    assert m.best_threshold == pytest.approx((0.85 + 0.6) / 2)
    assert (m.precision_at_threshold, m.recall_at_threshold, m.f1_at_threshold) == (1.0, 1.0, 1.0)
    kinds = {k.kind: k for k in m.per_kind}
    assert kinds["pos_a"].n == 2 and kinds["pos_a"].correct_at_threshold == 1.0 and kinds["pos_a"].roc_auc == 1.0
    assert kinds["neg"].label == 0 and kinds["neg"].roc_auc is None
    assert set(m.summary()) == {"roc_auc", "average_precision", "best_f1", "best_threshold", "f1_at_threshold",
                                "threshold"}


def test_prf_and_auc_with_one_inversion():
    scores = np.array([0.9, 0.7, 0.8, 0.2])
    labels = np.array([1, 1, 0, 0])
    precision, recall, f1 = prf_at(scores, labels, 0.75)  # predicts 0.9 and 0.8: 1 TP, 1 FP, 1 FN
    assert (precision, recall, f1) == (0.5, 0.5, 0.5)
    m = pair_metrics(scores, labels, 0.75)
    assert m.roc_auc == pytest.approx(0.75)  # 3 of 4 (pos, neg) pairs ordered right
    f1_best, t = best_f1_threshold(scores, labels)
    assert f1_best == pytest.approx(0.8) and 0.2 < t < 0.7  # take all three top scores: P 2/3, R 1


def test_ties_are_cut_together():
    f1, t = best_f1_threshold([0.8, 0.8, 0.3], [1, 0, 0])
    assert t < 0.8 and f1 == pytest.approx(2 / 3)


def test_group_retrieval_perfect_and_known():
    groups = ["a"] * 4 + ["b"] * 4
    emb = np.zeros((8, 2), dtype=np.float32)
    emb[:4, 0] = 1.0
    emb[4:, 1] = 1.0
    emb += np.random.default_rng(0).normal(0, 0.01, emb.shape)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    m = group_metrics(emb, groups)
    assert (m.recall_at_1, m.recall_at_4, m.map, m.ns_score) == (1.0, 1.0, 1.0, 4.0)
    # a hand-made ranking: query 0's neighbours in order 3 (other group), 1, 2
    sim = np.array([
        [1, .8, .7, .9],
        [.8, 1, .9, .1],
        [.7, .9, 1, .1],
        [.9, .1, .1, 1],
    ])
    m = group_metrics_from_similarity(sim, ["a", "a", "a", "b"])  # "b" is a singleton: not a query
    assert m.recall_at_1 == pytest.approx(2 / 3)
    assert m.map == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1 + 1) / 3)
    assert m.ns_score == pytest.approx((1 + 2 + 1 + 2 + 1 + 2) / 3)


def test_loaders_resolve_paths_against_the_csv_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "pairs.csv").write_text("path_a,path_b,label,kind\r\na.jpg,b.jpg,1,pos_x\r\na.jpg,c.jpg,0,\r\n")
    pairs = load_pairs(tmp_path / "sub" / "pairs.csv")
    assert pairs.path_a[0] == tmp_path / "sub" / "a.jpg" and pairs.kinds == ["pos_x", "neg"]
    (tmp_path / "groups.csv").write_text("path,group\nx/1.jpg,g\n")
    assert load_groups(tmp_path / "groups.csv").paths == [tmp_path / "x" / "1.jpg"]


@pytest.mark.parametrize("text", ["a,b\n1,2\n", "path_a,path_b,label\nx,y,2\n", "path_a,path_b,label\n"])
def test_bad_pair_csv_is_a_clear_error(tmp_path, text):
    (tmp_path / "p.csv").write_text(text)
    with pytest.raises(EvalDataError):
        load_pairs(tmp_path / "p.csv")
