"""Exact reason codes for LightGBM models: Shapley attributions against one reference point.

Adverse-action notices (ECOA / Regulation B) must name the principal reasons a credit
application was declined. lendml compares the applicant ``x`` with one documented
reference applicant ``r`` (by default the average applicant who scores just past the
cutoff, :func:`reference_point`) and attributes the difference of the log-odds,
``f(x) - f(r)``, to the features with the Shapley value of the game
``v(S) = f(x_S, r_rest)``: the model evaluated on ``x``'s values for the features in ``S``
and ``r``'s for the others. With one reference point this is exact and cheap for a tree
ensemble. In one tree, a leaf is reached for the coalition ``S`` if and only if

* every feature of the set ``A`` (features whose constraints on the path ``x`` meets and
  ``r`` does not) is in ``S``, and
* no feature of the set ``B`` (those ``r`` meets and ``x`` does not) is in ``S``,

(features both meet do not matter; a feature neither meets makes the leaf unreachable), so
the leaf's value ``v`` adds ``v (|A|-1)! |B|! / (|A|+|B|)!`` to each feature of ``A`` and
subtracts ``v |A|! (|B|-1)! / (|A|+|B|)!`` from each feature of ``B``. The sum over the
leaves of all trees is the exact Shapley value; the attributions of a row add up to
``f(x) - f(r)`` (efficiency).

:class:`TreeExplainer` parses the model once (``Booster.dump_model``) into flat numpy
tables that reproduce LightGBM's own routing bit for bit — ``<=`` splits with their
``missing_type`` (None, Zero, NaN) and ``default_left``, categorical ``==`` splits with
their category sets, values within 1e-35 of zero read as zero. Every split value of a
feature cuts its values into bins; per edge of every tree a table says which bins satisfy
all the splits on that feature from the root down (so a feature used twice on a path is
one constraint). For a block of rows, a top-down pass over all trees at once (numpy, one
step per depth level) keeps the nodes reachable for some coalition and counts ``|B|`` on
the way; a bottom-up pass sums the leaves' closed-form shares below each node, and each
feature receives them on the edge where it joins ``A`` or ``B`` (a telescoping sum along
the path). The work is proportional to the reachable nodes of each row.
:func:`reason_codes` turns attributions into ranked, grouped reasons that never name an
excluded (protected) attribute; :func:`reference_point` documents the reference.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from lendml.errors import ConfigError, DataValidationError
from lendml.models.schema import FeatureSchema

if TYPE_CHECKING:
    import lightgbm as lgb

    from lendml.models.base import Model
    from lendml.models.lightgbm import LightGBMModel

log = logging.getLogger(__name__)

# LightGBM reads |value| <= kZeroThreshold (the float 1e-35) as zero when it predicts
# from a dense matrix, and as "zero" for missing_type Zero.
_KZERO = float(np.float32(1e-35))
_MISSING_TYPES = {"None": 0, "Zero": 1, "NaN": 2}
_SHOW = 5
# Rows per block in contributions(): the block's (rows x edges) answers stay in cache.
_BLOCK_BYTES = 2 * 2**20


# --------------------------------------------------------------------------- parsing
@dataclass
class _Forest:
    """The trees of one model, flattened: node arrays, edges and leaf paths."""

    n_features: int
    feature_names: list[str]
    roots: np.ndarray  # (n_trees,) node id of each root
    # nodes (internal and leaves)
    feature: np.ndarray  # -1 for leaves
    threshold: np.ndarray  # numeric splits
    is_cat: np.ndarray
    default_left: np.ndarray
    missing: np.ndarray  # 0 None, 1 Zero, 2 NaN
    left: np.ndarray  # -1 for leaves
    right: np.ndarray
    value: np.ndarray  # leaf values (0 for internal nodes)
    cat_words: np.ndarray  # (n_nodes, n_words) uint32 bitsets of categorical splits
    cat_nwords: np.ndarray  # words used per node
    # edges: one per non-root node, named by that child node
    parent: np.ndarray  # -1 for roots
    prev: np.ndarray  # the nearest edge above on the same feature, -1 if none
    depth: np.ndarray
    max_features_on_path: int  # most distinct features on one root-to-leaf path


def _parse_categories(text: str, where: str) -> list[int]:
    try:
        return [int(c) for c in str(text).split("||") if c != ""]
    except ValueError as exc:
        raise ConfigError(
            f"Categorical split {where} has threshold {text!r}; expected category codes "
            "joined by '||' as Booster.dump_model() writes them."
        ) from exc


def _flatten(dump: Mapping[str, Any]) -> _Forest:
    if int(dump.get("num_tree_per_iteration", 1)) != 1 or int(dump.get("num_class", 1)) != 1:
        raise ConfigError(
            "Reason codes need a binary or regression model (one tree per iteration); got "
            f"num_class={dump.get('num_class')!r}. Explain each class's model separately."
        )
    if dump.get("average_output"):
        raise ConfigError(
            "The model averages its trees (boosting='rf'); reason codes support summed "
            "trees (gbdt, goss, dart). Train with boosting='gbdt'."
        )
    names = [str(n) for n in dump.get("feature_names", [])]
    n_features = int(dump["max_feature_idx"]) + 1
    if len(names) != n_features:
        names = [f"Column_{i}" for i in range(n_features)]

    feature: list[int] = []
    threshold: list[float] = []
    is_cat: list[bool] = []
    default_left: list[bool] = []
    missing: list[int] = []
    left: list[int] = []
    right: list[int] = []
    value: list[float] = []
    cats: dict[int, list[int]] = {}
    parent: list[int] = []
    prev: list[int] = []
    depth_of: list[int] = []
    roots: list[int] = []
    path_features = 0

    def new_node(parent_id: int = -1, prev_id: int = -1, depth: int = 0) -> int:
        parent.append(parent_id)
        prev.append(prev_id)
        depth_of.append(depth)
        feature.append(-1)
        threshold.append(0.0)
        is_cat.append(False)
        default_left.append(False)
        missing.append(0)
        left.append(-1)
        right.append(-1)
        value.append(0.0)
        return len(feature) - 1

    for t, tree in enumerate(dump["tree_info"]):
        root = new_node()
        roots.append(root)
        # (json node, node id, depth, last edge per feature on the path)
        stack: list[tuple[Mapping[str, Any], int, int, dict[int, int]]] = [
            (tree["tree_structure"], root, 0, {})
        ]
        while stack:
            js, nid, depth, last = stack.pop()
            if "leaf_value" in js or "split_feature" not in js:
                if "leaf_coeff" in js:
                    raise ConfigError(
                        f"Tree {t} has linear leaves (linear_tree=True); reason codes "
                        "support constant leaves only. Train without linear_tree."
                    )
                value[nid] = float(js.get("leaf_value", 0.0))
                path_features = max(path_features, len(last))
                continue
            f = int(js["split_feature"])
            feature[nid] = f
            default_left[nid] = bool(js.get("default_left", False))
            mt = str(js.get("missing_type", "None"))
            if mt not in _MISSING_TYPES:
                raise ConfigError(
                    f"Tree {t} has a split with missing_type {mt!r}; expected one of "
                    f"{sorted(_MISSING_TYPES)}. Is this a LightGBM model dump?"
                )
            missing[nid] = _MISSING_TYPES[mt]
            decision = js.get("decision_type", "<=")
            if decision == "==":
                is_cat[nid] = True
                cats[nid] = _parse_categories(js["threshold"], f"in tree {t}")
            elif decision == "<=":
                # dump_model() writes thresholds beyond +-1e300 (in practice: the last
                # bin's bound, inf) as +-1e300; the booster itself compares with inf.
                t_value = float(js["threshold"])
                threshold[nid] = (
                    math.copysign(math.inf, t_value) if abs(t_value) >= 1e300 else t_value
                )
            else:
                raise ConfigError(
                    f"Tree {t} has a split with decision_type {decision!r}; LightGBM "
                    "writes '<=' (numeric) or '==' (categorical)."
                )
            children = []
            for side in ("left_child", "right_child"):
                child = new_node(nid, last.get(f, -1), depth + 1)
                children.append(child)
                stack.append((js[side], child, depth + 1, {**last, f: child}))
            left[nid], right[nid] = children

    n_nodes = len(feature)
    n_words = max((max(c, default=-1) // 32 + 1 for c in cats.values()), default=0)
    cat_words = np.zeros((n_nodes, max(n_words, 1)), dtype=np.uint32)
    cat_nwords = np.zeros(n_nodes, dtype=np.int64)
    for nid, codes in cats.items():
        for c in codes:
            cat_words[nid, c // 32] |= np.uint32(1 << (c % 32))
        cat_nwords[nid] = max(codes, default=-1) // 32 + 1
    return _Forest(
        n_features=n_features,
        feature_names=names,
        roots=np.asarray(roots, dtype=np.int64),
        feature=np.asarray(feature, dtype=np.int64),
        threshold=np.asarray(threshold, dtype=np.float64),
        is_cat=np.asarray(is_cat, dtype=bool),
        default_left=np.asarray(default_left, dtype=bool),
        missing=np.asarray(missing, dtype=np.int8),
        left=np.asarray(left, dtype=np.int64),
        right=np.asarray(right, dtype=np.int64),
        value=np.asarray(value, dtype=np.float64),
        cat_words=cat_words,
        cat_nwords=cat_nwords,
        parent=np.asarray(parent, dtype=np.int64),
        prev=np.asarray(prev, dtype=np.int64),
        depth=np.asarray(depth_of, dtype=np.int64),
        max_features_on_path=path_features,
    )


# --------------------------------------------------------------------------- routing
def _goes_left(forest: _Forest, node: np.ndarray, fval: np.ndarray) -> np.ndarray:
    """LightGBM's decision at ``node`` for the value ``fval`` (elementwise)."""
    fval = np.where(np.abs(fval) <= _KZERO, 0.0, fval)  # the dense-matrix reader
    cat = forest.is_cat[node]
    out = np.empty(node.shape, dtype=bool)
    # numeric: NaN reads as 0 unless missing_type is NaN; missing values take the default
    num = ~cat
    if num.any():
        nd, fv = node[num], fval[num]
        mt = forest.missing[nd]
        nan = np.isnan(fv)
        fv = np.where(nan & (mt != 2), 0.0, fv)
        is_missing = ((mt == 1) & (fv == 0.0)) | ((mt == 2) & nan)
        with np.errstate(invalid="ignore"):
            out[num] = np.where(is_missing, forest.default_left[nd], fv <= forest.threshold[nd])
    # categorical: NaN, negative and unknown codes go right; the int cast truncates
    if cat.any():
        nd, fv = node[cat], fval[cat]
        ok = np.isfinite(fv) & (fv > -1.0) & (fv < 2.0**31)
        code = np.where(ok, np.trunc(np.where(ok, fv, 0.0)), 0).astype(np.int64)
        word = code // 32
        ok &= word < forest.cat_nwords[nd]
        bits = forest.cat_words[nd, np.minimum(word, forest.cat_words.shape[1] - 1)]
        out[cat] = ok & (((bits >> (code % 32).astype(np.uint32)) & 1) == 1)
    return out


def _route(forest: _Forest, X: np.ndarray) -> np.ndarray:
    """The leaf node id each row reaches in each tree, shape ``(n, n_trees)``."""
    cur = np.broadcast_to(forest.roots, (len(X), len(forest.roots))).copy()
    rows = np.broadcast_to(np.arange(len(X))[:, None], cur.shape)
    for _ in range(int(forest.depth.max(initial=0))):
        active = forest.left[cur] >= 0
        if not active.any():
            break
        nd = cur[active]
        fv = X[rows[active], forest.feature[nd]]
        cur[active] = np.where(_goes_left(forest, nd, fv), forest.left[nd], forest.right[nd])
    return cur


# --------------------------------------------------------------------------- tables
@dataclass
class _Bins:
    """Per feature, the values that every split on it routes alike form one bin.

    Numeric feature with sorted split thresholds ``t_0 < ... < t_{m-1}``: bin ``i`` holds
    the non-zero values in ``(t_{i-1}, t_i]`` (``i = 0..m``), bin ``m+1`` zero and bin
    ``m+2`` NaN. Categorical feature whose splits name codes below ``C``: bin ``c`` holds
    code ``c`` (values truncated to integers, as LightGBM does) and bin ``C`` everything
    that always goes right (NaN, negative, ``>= C``).
    """

    n_bins: np.ndarray  # (n_features,)
    is_cat: np.ndarray  # (n_features,)
    thresholds: np.ndarray  # (n_features, max thresholds) padded with +inf
    n_thresholds: np.ndarray  # (n_features,)
    n_cats: np.ndarray  # (n_features,) C for categorical features

    def of(self, X: np.ndarray) -> np.ndarray:
        """The bin of every value, shape ``(n_features, n)``."""
        X = np.where(np.abs(X) <= _KZERO, 0.0, X)
        n, F = X.shape
        out = np.zeros((F, n), dtype=np.int64)
        num = np.flatnonzero(~self.is_cat & (self.n_thresholds > 0))
        if len(num):
            xs = X[:, num].T  # (k, n)
            th = self.thresholds[num]  # (k, m)
            with np.errstate(invalid="ignore"):
                k = (th[:, None, :] < xs[:, :, None]).sum(axis=2)
            m = self.n_thresholds[num][:, None]
            k = np.where(xs == 0.0, m + 1, k)
            out[num] = np.where(np.isnan(xs), m + 2, k)
        cat = np.flatnonzero(self.is_cat)
        if len(cat):
            xs = X[:, cat].T
            c = self.n_cats[cat][:, None]
            ok = np.isfinite(xs) & (xs > -1.0) & (xs < 2.0**31)
            code = np.trunc(np.where(ok, xs, 0.0)).astype(np.int64)
            out[cat] = np.where(ok & (code < c), code, c)
        return out


def _bins_and_tables(
    forest: _Forest,
) -> tuple[_Bins, list[tuple[int, np.ndarray]], np.ndarray]:
    """Bins per feature and, per edge, which bins of its feature satisfy every split on
    that feature from the root down to the edge (the edge's *cumulative* constraint).

    Returns the bins; per feature with splits, its table (bins x edges on the feature);
    and per node the column of the edge into it (-1 for roots) in the concatenation of
    the tables' columns.
    """
    F = forest.n_features
    internal = np.flatnonzero(forest.left >= 0)
    feats = forest.feature[internal]
    is_cat = np.zeros(F, dtype=bool)
    is_num = np.zeros(F, dtype=bool)
    is_cat[feats[forest.is_cat[internal]]] = True
    is_num[feats[~forest.is_cat[internal]]] = True
    both = np.flatnonzero(is_cat & is_num)
    if len(both):
        raise ConfigError(
            f"Features {both[:_SHOW].tolist()!r} are split both as numbers and as categories "
            "in this model; LightGBM never does that — is the model dump corrupted?"
        )
    thr_lists = [np.empty(0)] * F
    n_cats = np.zeros(F, dtype=np.int64)
    for f in np.unique(feats):
        nodes = internal[feats == f]
        if is_cat[f]:
            n_cats[f] = int(forest.cat_nwords[nodes].max()) * 32
        else:
            thr_lists[f] = np.unique(forest.threshold[nodes])
    n_thr = np.asarray([len(t) for t in thr_lists], dtype=np.int64)
    n_bins = np.where(is_cat, n_cats + 1, np.where(is_num, n_thr + 3, 1))
    th = np.full((F, max(int(n_thr.max(initial=0)), 1)), np.inf)
    for f, t in enumerate(thr_lists):
        th[f, : len(t)] = t
    bins = _Bins(n_bins=n_bins, is_cat=is_cat, thresholds=th, n_thresholds=n_thr, n_cats=n_cats)

    def bin_left(nid: int) -> np.ndarray:
        """Which bins of the node's feature go left at the node."""
        f = int(forest.feature[nid])
        if forest.is_cat[nid]:
            codes = np.arange(n_cats[f])
            words = forest.cat_words[nid, codes // 32]
            inside = ((words >> (codes % 32).astype(np.uint32)) & 1) == 1
            inside &= (codes // 32) < forest.cat_nwords[nid]
            return np.append(inside, False)
        t = thr_lists[f]
        j = int(np.searchsorted(t, forest.threshold[nid]))
        regular = np.arange(len(t) + 1) <= j
        mt, dl = int(forest.missing[nid]), bool(forest.default_left[nid])
        zero_left = dl if mt == 1 else bool(forest.threshold[nid] >= 0.0)
        nan_left = dl if mt in (1, 2) else bool(forest.threshold[nid] >= 0.0)
        return np.append(regular, [zero_left, nan_left])

    cum: dict[int, np.ndarray] = {}
    # creation order: an edge is always created before the edges below it
    edges = np.flatnonzero(forest.parent >= 0)
    for child in edges.tolist():
        parent = int(forest.parent[child])
        go_left = bin_left(parent) if forest.left[parent] == child else None
        ok = go_left if go_left is not None else ~bin_left(parent)
        prev = int(forest.prev[child])
        cum[child] = ok & cum[prev] if prev >= 0 else ok

    # Edges are numbered feature by feature; each feature's table is bins x its edges, so
    # a row's answers for all edges of a feature are one contiguous table row.
    n_nodes = len(forest.feature)
    column = np.full(n_nodes, -1, dtype=np.int64)
    tables: list[tuple[int, np.ndarray]] = []
    if len(edges):
        edge_feat = forest.feature[forest.parent[edges]]
        start = 0
        for f in np.unique(edge_feat):
            mine = edges[edge_feat == f]
            column[mine] = start + np.arange(len(mine))
            tables.append((int(f), np.stack([cum[int(e)] for e in mine], axis=1)))
            start += len(mine)
    return bins, tables, column


def _shapley_weights(depth: int) -> tuple[np.ndarray, np.ndarray]:
    """``(a-1)! b! / (a+b)!`` and ``a! (b-1)! / (a+b)!`` for ``0 <= a, b <= depth``
    (zero where ``a = 0``, respectively ``b = 0``)."""
    pos = np.zeros((depth + 1, depth + 1))
    neg = np.zeros((depth + 1, depth + 1))
    for a in range(depth + 1):
        for b in range(depth + 1):
            if a:
                pos[a, b] = 1.0 / (a * math.comb(a + b, a))
            if b:
                neg[a, b] = 1.0 / (b * math.comb(a + b, b))
    return pos, neg


@dataclass
class _ReferencePlan:
    """What depends on the reference row only.

    The work matrix of a block has one column per edge plus a last column that is always
    true: an edge whose constraint ``r`` meets needs no question to ``x``, so it points
    there.
    """

    ask_column: np.ndarray  # per node: the column to read to know if the edge is open
    b_column: np.ndarray  # per node: the column whose "no" puts its feature in B there
    b_column_prev: np.ndarray  # per node: the same for the previous edge on its feature
    d_a: np.ndarray  # per node: 1 where the edge's feature joins A on a reachable path
    coef_base: np.ndarray  # per node: |A| * (depth + 1) at leaves (row of the weights)


# --------------------------------------------------------------------------- explainer
class TreeExplainer:
    """Exact Shapley attributions of a LightGBM model against one reference row.

    Build it once per model with :meth:`from_model` (or :meth:`from_booster`,
    :meth:`from_dump`); it holds flat numpy tables, never the booster.

    Attributes
    ----------
    feature_names_
        The model's inputs, in the order of the encoded matrix.
    schema_
        The model's :class:`~lendml.models.schema.FeatureSchema` when built with
        :meth:`from_model` (then :meth:`explain` reads frames), else ``None``.
    n_trees_
        Trees explained (the model's best iteration).
    n_leaves_
        Leaves over all trees.

    Examples
    --------
    >>> import lightgbm as lgb, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 3)); y = (X[:, 0] + rng.normal(size=300) > 0).astype(float)
    >>> booster = lgb.train({"objective": "binary", "verbosity": -1, "num_leaves": 4},
    ...                     lgb.Dataset(X, y), num_boost_round=5)
    >>> explainer = TreeExplainer.from_booster(booster)
    >>> phi = explainer.contributions(X[:2], X.mean(axis=0))
    >>> gap = explainer.predict_raw(X[:2]) - explainer.predict_raw(X.mean(axis=0)[None])
    >>> bool(np.allclose(phi.sum(axis=1), gap))
    True
    """

    def __init__(self, dump: Mapping[str, Any], *, schema: FeatureSchema | None = None) -> None:
        forest = _flatten(dump)
        if schema is not None:
            if len(schema) != forest.n_features:
                raise ConfigError(
                    f"The model has {forest.n_features} features but its schema "
                    f"{len(schema)}; the schema belongs to another model."
                )
            forest.feature_names = schema.names
        self._forest = forest
        self.schema_ = schema
        self.feature_names_: list[str] = forest.feature_names
        self.n_trees_ = len(forest.roots)
        self.n_leaves_ = int((forest.left < 0).sum())
        self._bins, self._tables, table_column = _bins_and_tables(forest)
        self._n_edges = sum(t.shape[1] for _f, t in self._tables)
        # The work matrix numbers edges in node order (tree by tree), so that the edges a
        # row visits in one tree sit together in memory; the tables number them feature
        # by feature. _gather reorders one into the other.
        edges = np.flatnonzero(forest.parent >= 0)
        self._column = np.full(len(forest.feature), -1, dtype=np.int64)
        self._column[edges] = np.arange(len(edges))
        self._gather = table_column[edges]
        has_parent = forest.parent >= 0
        # per node: the feature of the edge into it
        self._edge_feature = np.where(has_parent, forest.feature[np.maximum(forest.parent, 0)], -1)
        self._is_leaf = forest.left < 0
        self._is_inner = ~self._is_leaf
        self._kids = np.stack([forest.left, forest.right], axis=1)
        self._by_depth = [
            np.flatnonzero(forest.depth == d)
            for d in range(1, int(forest.depth.max(initial=0)) + 1)
        ]
        self._depth = forest.max_features_on_path
        pos, neg = _shapley_weights(self._depth)
        self._w_pos, self._w_neg = pos.ravel(), neg.ravel()
        self._plans: dict[bytes, _ReferencePlan] = {}
        self._plans_lock = threading.Lock()  # serving may explain from several threads

    # -- construction
    @classmethod
    def from_dump(cls, dump: Mapping[str, Any]) -> TreeExplainer:
        """From the JSON of ``Booster.dump_model()`` (already parsed to a dict)."""
        return cls(dump)

    @classmethod
    def from_booster(
        cls, booster: lgb.Booster, *, num_iteration: int | None = None
    ) -> TreeExplainer:
        """From a LightGBM booster, using its first ``num_iteration`` iterations
        (default: its best iteration if it has one, else all)."""
        return cls(booster.dump_model(num_iteration=num_iteration))

    @classmethod
    def from_model(cls, model: LightGBMModel) -> TreeExplainer:
        """From a fitted :class:`~lendml.models.lightgbm.LightGBMModel`, up to its
        ``best_iteration_``; feature order is ``model.schema_.names``.

        Raises
        ------
        ConfigError
            The model is not fitted, or its booster has another number of features than
            its schema.
        """
        booster = getattr(model, "booster_", None)
        if booster is None:
            raise ConfigError(
                f"{type(model).__name__} is not a fitted LightGBM model; fit() it first or "
                "load a saved one with lendml.models.load_model()."
            )
        return cls(booster.dump_model(num_iteration=model.best_iteration_), schema=model.schema_)

    # -- scoring
    def predict_raw(self, X_encoded: np.ndarray) -> np.ndarray:
        """The raw score (log-odds) of each row, routed through the parsed trees.

        Equal, bit for bit, to ``booster.predict(X, raw_score=True)``; used to check the
        parsing and as ``f`` in ``contributions().sum(axis=1) == f(x) - f(r)``.
        """
        X = self._check_matrix(X_encoded, "X_encoded")
        leaves = _route(self._forest, X)
        out = np.zeros(len(X))
        for t in range(leaves.shape[1]):  # tree order, as LightGBM sums
            out += self._forest.value[leaves[:, t]]
        return out

    def contributions(
        self, X_encoded: np.ndarray, reference: np.ndarray | ReferencePoint
    ) -> np.ndarray:
        """Exact Shapley attributions of each row against ``reference``, log-odds scale.

        Parameters
        ----------
        X_encoded
            Rows as the model reads them, shape ``(n, n_features)``:
            ``model.schema_.encode(frame)`` (categoricals as codes, missing as NaN).
        reference
            One encoded row, shape ``(n_features,)``, or a :class:`ReferencePoint`.

        Returns
        -------
        numpy.ndarray
            Shape ``(n, n_features)``; row ``i`` sums to ``f(x_i) - f(reference)``
            (within floating-point rounding, ~1e-12).

        Raises
        ------
        DataValidationError
            ``X_encoded`` or ``reference`` has the wrong shape.
        """
        X = self._check_matrix(X_encoded, "X_encoded")
        r = self._check_reference(reference)
        plan = self._plan(r)
        out = np.empty((len(X), self._forest.n_features))
        block = min(max(_BLOCK_BYTES // max(self._n_edges, 1), 1), 1024)
        for start in range(0, len(X), block):
            stop = start + block
            out[start:stop] = self._contributions_block(X[start:stop], plan)
        return out

    def _meets_all(self, X: np.ndarray) -> np.ndarray:
        """Whether each row meets the cumulative constraint of each edge, shape
        ``(n, n_edges)`` with edges in column order (``self._column``)."""
        bins = self._bins.of(X)
        by_feature = np.empty((len(X), self._n_edges), dtype=bool)
        start = 0
        for f, table in self._tables:
            stop = start + table.shape[1]
            by_feature[:, start:stop] = table[bins[f]]
            start = stop
        return by_feature.take(self._gather, axis=1)

    def explain(
        self,
        frame: pd.DataFrame,
        reference: ReferencePoint,
        *,
        top: int = 4,
        exclude: Iterable[str] = (),
        groups: Mapping[str, str] | None = None,
    ) -> list[list[ReasonCode]]:
        """The adverse reasons of each row of ``frame`` against ``reference``.

        Encodes ``frame`` with the model's schema, computes :meth:`contributions` and
        ranks them with :func:`reason_codes` (``direction="adverse"``), attaching the
        rows' and the reference's readable values.

        Raises
        ------
        ConfigError
            The explainer was not built with :meth:`from_model` (it has no schema).
        """
        if self.schema_ is None:
            raise ConfigError(
                "This explainer was built from a booster or a dump and has no feature "
                "schema; build it with TreeExplainer.from_model(model), or encode the rows "
                "yourself and call contributions() then reason_codes()."
            )
        phi = self.contributions(self.schema_.encode(frame), reference)
        codes: list[list[ReasonCode]] = reason_codes(
            phi,
            self.feature_names_,
            top=top,
            exclude=exclude,
            groups=groups,
            values=frame,
            reference=reference,
        )
        return codes

    def _contributions_block(self, X: np.ndarray, plan: _ReferencePlan) -> np.ndarray:
        n, F = X.shape
        width = self._n_edges + 1
        meets = np.ones((n, width), dtype=bool)  # the last column: always "yes"
        meets[:, :-1] = self._meets_all(X)
        meets = meets.ravel()
        # 1. Top-down, one level at a time, every (row, node) reachable for some coalition:
        #    a child is reachable if its parent is and x or r meets the constraints on its
        #    feature. Along the way, b = |B| so far: a feature joins B where r meets its
        #    constraints and x stops meeting them (dB = 1 on that edge).
        #    (ndarray.take: numpy's fast path for these gathers.)
        roots = self._forest.roots
        rows = np.repeat(np.arange(n) * width, len(roots))
        nodes = np.tile(roots, n)
        b = np.zeros(len(nodes), dtype=np.int64)
        levels: list[tuple[np.ndarray, ...]] = []
        parent = np.zeros(0, dtype=np.int64)
        d_b = np.zeros(0, dtype=bool)
        while len(nodes):
            inner_mask = self._is_inner.take(nodes)
            levels.append((rows, nodes, parent, d_b, b, np.flatnonzero(~inner_mask)))
            inner = np.flatnonzero(inner_mask)
            children = self._kids.take(nodes.take(inner), axis=0).ravel()
            child_rows = np.repeat(rows.take(inner), 2)
            keep = np.flatnonzero(meets.take(child_rows + plan.ask_column.take(children)))
            rows = child_rows.take(keep)
            nodes = children.take(keep)
            parent = inner.take(keep >> 1)
            # constraints only tighten down a path, so "x meets it here" implies "x met it
            # on the previous edge on this feature": dB = met before and not now
            d_b = meets.take(rows + plan.b_column_prev.take(nodes))
            d_b &= ~meets.take(rows + plan.b_column.take(nodes))
            b = b.take(parent) + d_b
        # 2. Each reachable leaf's shares by the closed form: SP (to each A-feature) and
        #    SN (from each B-feature), summed bottom-up so that every node holds the sums
        #    of the leaves below it.
        out = np.zeros(n * F)
        below_pos = below_neg = np.zeros(0)
        child_parent = np.zeros(0, dtype=np.int64)
        for rows, nodes, parent, d_b, b, leaves in reversed(levels):
            # (astype: bincount of nothing is an int array, even with weights)
            s_pos = np.bincount(child_parent, below_pos, len(nodes)).astype(float, copy=False)
            s_neg = np.bincount(child_parent, below_neg, len(nodes)).astype(float, copy=False)
            leaf_nodes = nodes.take(leaves)
            coef = plan.coef_base.take(leaf_nodes) + b.take(leaves)
            value = self._forest.value.take(leaf_nodes)
            s_pos[leaves] = value * self._w_pos.take(coef)
            s_neg[leaves] = value * self._w_neg.take(coef)
            # 3. Telescoped over the path: a feature gets SP where it joins A, -SN where it
            #    joins B, on the edge into the node.
            if len(parent):
                d_a = plan.d_a.take(nodes)
                moved = np.flatnonzero(d_a | d_b)
                weight = d_a.take(moved) * s_pos.take(moved) - d_b.take(moved) * s_neg.take(moved)
                flat = (rows.take(moved) // width) * F + self._edge_feature.take(nodes.take(moved))
                out += np.bincount(flat, weights=weight, minlength=n * F)
            below_pos, below_neg, child_parent = s_pos, s_neg, parent
        return out.reshape(n, F)

    def _plan(self, r: np.ndarray) -> _ReferencePlan:
        key = r.tobytes()
        with self._plans_lock:
            plan = self._plans.get(key)
        if plan is not None:
            return plan
        E = self._n_edges
        edges = self._column >= 0
        meets_r = np.ones(len(self._column), dtype=bool)
        meets_r[edges] = self._meets_all(r[None, :])[0, self._column[edges]]
        prev = self._forest.prev
        has_prev = prev >= 0
        b_column = np.where(meets_r & edges, self._column, E)
        is_a = ~meets_r
        d_a = is_a.copy()  # joins A here: not met by r here, met on the previous edge
        d_a[has_prev] &= ~is_a[prev[has_prev]]
        a = np.zeros(len(self._column), dtype=np.int64)  # |A| on the path to each node
        for nodes in self._by_depth:
            a[nodes] = a[self._forest.parent[nodes]] + d_a[nodes]
        coef_base = np.where(self._is_leaf, a * (self._depth + 1), 0)
        plan = _ReferencePlan(
            ask_column=np.where(meets_r, E, self._column),
            b_column=b_column,
            b_column_prev=np.where(has_prev, b_column[np.maximum(prev, 0)], E),
            d_a=d_a,
            coef_base=coef_base,
        )
        with self._plans_lock:
            if len(self._plans) >= 8:  # a few references at a time; drop the oldest
                self._plans.pop(next(iter(self._plans)))
            self._plans[key] = plan
        return plan

    # -- validation
    def _check_matrix(self, X: Any, what: str) -> np.ndarray:
        arr = np.asarray(X, dtype=np.float64)
        F = self._forest.n_features
        if arr.ndim != 2 or arr.shape[1] != F:
            raise DataValidationError(
                f"{what} must have shape (n_rows, {F}) — the model's {F} encoded features; "
                f"got shape {arr.shape!r}. Encode a frame with model.schema_.encode(frame)."
            )
        return arr

    def _check_reference(self, reference: np.ndarray | ReferencePoint) -> np.ndarray:
        if isinstance(reference, ReferencePoint):
            if reference.features != tuple(self.feature_names_):
                raise DataValidationError(
                    f"The reference point's features {list(reference.features)[:_SHOW]!r} "
                    f"differ from the model's {self.feature_names_[:_SHOW]!r}; compute the "
                    "reference point for this model."
                )
            reference = reference.encoded
        r = np.asarray(reference, dtype=np.float64)
        F = self._forest.n_features
        if r.shape != (F,):
            raise DataValidationError(
                f"reference must be one encoded row of shape ({F},); got shape {r.shape!r}."
            )
        return r


# --------------------------------------------------------------------------- reasons
@dataclass(frozen=True)
class ReasonCode:
    """One principal reason: a feature, or a group of features, and how much it moved
    the log-odds of a bad outcome away from the reference applicant.

    ``values`` and ``reference`` map each feature of the reason to the applicant's and
    the reference point's values (``None`` when not given or missing).
    """

    code: str
    contribution: float
    features: tuple[str, ...]
    values: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "code": self.code,
            "contribution": self.contribution,
            "features": list(self.features),
            "values": dict(self.values),
            "reference": dict(self.reference),
        }


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


class _Values:
    """Readable values of rows, read lazily per (row, feature): only reasons need them."""

    def __init__(self, values: Any, names: Sequence[str], n: int, what: str) -> None:
        self._frame: pd.DataFrame | None = None
        self._mapping: Mapping[str, Any] | None = None
        self._columns: dict[str, np.ndarray] = {}
        self._array: np.ndarray | None = None
        self._index = {name: j for j, name in enumerate(names)}
        if isinstance(values, ReferencePoint):
            values = values.values
        if isinstance(values, pd.Series):
            values = values.to_dict()
        if isinstance(values, Mapping | pd.DataFrame):
            have = values.columns if isinstance(values, pd.DataFrame) else values
            missing = [c for c in names if c not in have]
            if missing:
                raise DataValidationError(
                    f"{what} lacks the feature(s) {missing[:_SHOW]!r}; pass the rows (or the "
                    "reference) the contributions were computed from."
                )
        if isinstance(values, Mapping):
            self._mapping, rows = values, 1
        elif isinstance(values, pd.DataFrame):
            self._frame, rows = values, len(values)
        else:
            arr = np.asarray(values, dtype=object)
            arr = arr.reshape(1, -1) if arr.ndim == 1 else arr
            if arr.ndim != 2 or arr.shape[1] != len(names):
                raise DataValidationError(
                    f"{what} must have one column per feature ({len(names)}); got shape "
                    f"{arr.shape!r}."
                )
            self._array, rows = arr, len(arr)
        if rows not in (1, n):
            raise DataValidationError(
                f"{what} has {rows} row(s) but the contributions have {n}; pass the same rows."
            )
        self._one = rows == 1

    def get(self, i: int, feature: str) -> Any:
        i = 0 if self._one else i
        if self._mapping is not None:
            return _plain(self._mapping[feature])
        if self._array is not None:
            return _plain(self._array[i, self._index[feature]])
        column = self._columns.get(feature)
        if column is None and self._frame is not None:
            column = self._columns[feature] = self._frame[feature].to_numpy(dtype=object)
        return None if column is None else _plain(column[i])


def reason_codes(
    contributions: Sequence[float] | np.ndarray,
    feature_names: Sequence[str],
    *,
    top: int = 4,
    exclude: Iterable[str] = (),
    groups: Mapping[str, str] | None = None,
    direction: Literal["adverse", "favourable"] = "adverse",
    values: Any = None,
    reference: Any = None,
) -> list[Any]:
    """Rank the principal reasons of each row from its attributions.

    Parameters
    ----------
    contributions
        Attributions on the log-odds of a bad outcome: one row ``(n_features,)`` or many
        ``(n, n_features)`` (:meth:`TreeExplainer.contributions`).
    feature_names
        The features, in the order of the columns.
    top
        At most this many reasons per row (Regulation B: up to four principal reasons).
    exclude
        Features, or group codes, that must never be a reason — protected attributes.
        An excluded feature is dropped before grouping, so it never adds to a group.
        Names that are not features or codes are accepted (a protected attribute is
        normally not a model input at all).
    groups
        ``{feature: code}``: features that make one reason (e.g. several utilisation
        features under ``"utilisation"``); their attributions are summed. Features not
        listed are their own reason, named by the feature.
    direction
        ``"adverse"`` ranks the reasons that raised the risk (strictly positive sums,
        largest first); ``"favourable"`` those that lowered it (strictly negative sums,
        most negative first).
    values, reference
        Optional readable values for the reasons: the rows' values (a frame with the
        feature columns, a mapping, or an array aligned with ``feature_names``) and the
        reference point's (a :class:`ReferencePoint`, a mapping or an array).

    Returns
    -------
    list
        For one row, a list of at most ``top`` :class:`ReasonCode`; for many rows, one
        such list per row. Ties in the attribution are broken by the code's name (the
        order of ``sorted``), so the result never depends on the column order. A row
        with no attribution of the requested sign has no reasons: ``[]``.

    Raises
    ------
    ConfigError
        ``top`` below 1, an unknown ``direction``, a group naming an unknown feature, or
        a group code equal to the name of a feature outside that group.
    DataValidationError
        The shapes of ``contributions``, ``feature_names`` and ``values`` disagree.

    Examples
    --------
    >>> codes = reason_codes([0.4, -0.1, 0.4, 0.2], ["dti", "income", "util_a", "util_b"],
    ...                      groups={"util_a": "utilisation", "util_b": "utilisation"})
    >>> [(c.code, round(c.contribution, 2)) for c in codes]
    [('utilisation', 0.6), ('dti', 0.4)]
    """
    phi = np.asarray(contributions, dtype=np.float64)
    single = phi.ndim == 1
    phi = phi.reshape(1, -1) if single else phi
    names = [str(n) for n in feature_names]
    if phi.ndim != 2 or phi.shape[1] != len(names):
        raise DataValidationError(
            f"contributions must have one column per feature ({len(names)} names); got shape "
            f"{np.asarray(contributions).shape!r}."
        )
    if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 1:
        raise ConfigError(
            f"top must be a positive integer (Regulation B asks for up to 4); got {top!r}."
        )
    if direction not in ("adverse", "favourable"):
        raise ConfigError(f"direction must be 'adverse' or 'favourable'; got {direction!r}.")
    groups = dict(groups or {})
    unknown = sorted(set(groups) - set(names))
    if unknown:
        raise ConfigError(
            f"groups names feature(s) {unknown[:_SHOW]!r} that are not model features; "
            f"features: {names[:10]!r}. Remove them or fix their spelling."
        )
    clash = sorted({code for code in groups.values() if code in names and groups.get(code) != code})
    if clash:
        raise ConfigError(
            f"Group code(s) {clash!r} are also names of features outside the group; rename "
            "the code or put the feature in its group."
        )
    excluded = {str(e) for e in exclude}
    code_of = {n: groups.get(n, n) for n in names if n not in excluded}
    codes = sorted({c for c in code_of.values() if c not in excluded})
    members = {c: tuple(sorted(n for n, k in code_of.items() if k == c)) for c in codes}
    col = {c: i for i, c in enumerate(codes)}
    agg = np.zeros((len(names), len(codes)))
    for j, n in enumerate(names):
        c = code_of.get(n)
        if c is not None and c in col:
            agg[j, col[c]] = 1.0
    by_code = phi @ agg if codes else np.zeros((len(phi), 0))  # (n, codes), codes sorted
    signed = by_code if direction == "adverse" else -by_code
    k = min(top, len(codes))
    order = np.argsort(-signed, axis=1, kind="stable")[:, :k]  # stable: ties by name
    row_values = None if values is None else _Values(values, names, len(phi), "values")
    ref_values = None if reference is None else _Values(reference, names, 1, "reference")
    out: list[list[ReasonCode]] = []
    for i in range(len(phi)):
        reasons = []
        for j in order[i]:
            if not signed[i, j] > 0.0:
                break
            feats = members[codes[j]]
            reasons.append(
                ReasonCode(
                    code=codes[j],
                    contribution=float(by_code[i, j]),
                    features=feats,
                    values={f: row_values.get(i, f) if row_values else None for f in feats},
                    reference={f: ref_values.get(0, f) if ref_values else None for f in feats},
                )
            )
        out.append(reasons)
    return out[0] if single else out


# --------------------------------------------------------------------------- reference
@dataclass(frozen=True)
class ReferencePoint:
    """The documented reference applicant that reasons are measured against.

    Attributes
    ----------
    features
        The model's features, in schema order.
    encoded
        The reference as the model reads it, shape ``(n_features,)``.
    values
        Readable values: numbers for numeric features, category labels for categorical
        ones, ``None`` where the reference is missing.
    cutoff, band, side, n_rows
        How it was chosen: the rows whose score lies within ``band`` of ``cutoff`` on
        ``side`` (the band actually used, after any widening), and how many there were.
    """

    features: tuple[str, ...]
    encoded: np.ndarray
    values: dict[str, Any]
    cutoff: float | None = None
    band: float | None = None
    side: str | None = None
    n_rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (store it next to the model version)."""
        return {
            "features": list(self.features),
            "values": {f: self.values[f] for f in self.features},
            "cutoff": self.cutoff,
            "band": self.band,
            "side": self.side,
            "n_rows": self.n_rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], schema: FeatureSchema) -> ReferencePoint:
        """Rebuild a stored reference point, encoding its values with ``schema``.

        Raises
        ------
        DataValidationError
            The stored features differ from the schema's.
        """
        features = tuple(str(f) for f in data.get("features", ()))
        if features != tuple(schema.names):
            raise DataValidationError(
                f"The stored reference point's features {list(features)[:_SHOW]!r} differ "
                f"from the model's {schema.names[:_SHOW]!r}; it belongs to another model "
                "version — recompute it with reference_point()."
            )
        values = {f: _plain(data["values"].get(f)) for f in features}
        return cls(
            features=features,
            encoded=_encode_values(values, schema),
            values=values,
            cutoff=data.get("cutoff"),
            band=data.get("band"),
            side=data.get("side"),
            n_rows=data.get("n_rows"),
        )


def _encode_values(values: Mapping[str, Any], schema: FeatureSchema) -> np.ndarray:
    frame = pd.DataFrame(
        {
            spec.name: pd.Series(
                [values[spec.name]], dtype=object if spec.kind == "categorical" else "float64"
            )
            for spec in schema.features
        }
    )
    return schema.encode(frame)[0]


def reference_point(
    model: Model,
    frame: pd.DataFrame,
    scores: Sequence[float] | np.ndarray | pd.Series,
    *,
    cutoff: float,
    band: float = 0.02,
    side: Literal["above", "below"] = "above",
    min_rows: int = 30,
) -> ReferencePoint:
    """The reference applicant: the average of the rows scoring just past the cutoff.

    Numeric features take the mean of the rows (missing values ignored), categorical
    features the most frequent category (ties: the first in the schema's category order).
    A feature missing in all those rows is missing in the reference.

    Parameters
    ----------
    model
        A fitted model; its ``schema_`` encodes ``frame``.
    frame
        Applicants (e.g. a recent scored population), with the model's features.
    scores
        Their scores, one per row, on the scale of ``cutoff``.
    cutoff, band, side
        Rows with ``cutoff <= score <= cutoff + band`` (``side="above"``) or
        ``cutoff - band <= score < cutoff`` (``side="below"``, e.g. probabilities of
        default approved below the cutoff).
    min_rows
        If the band holds fewer rows, it is doubled until it holds ``min_rows`` or every
        row on that side of the cutoff.

    Returns
    -------
    ReferencePoint
        The encoded vector for :meth:`TreeExplainer.contributions` and the readable values
        (``to_dict()`` is JSON) with the band actually used and the number of rows.

    Raises
    ------
    ConfigError
        ``band`` or ``min_rows`` not positive, or ``side`` unknown.
    DataValidationError
        ``scores`` does not match ``frame`` or holds non-finite values, or no row lies on
        the requested side of the cutoff.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from lendml.models.lightgbm import LightGBMModel
    >>> rng = np.random.default_rng(0)
    >>> home = rng.choice(["own", "rent"], 400)
    >>> frame = pd.DataFrame({"dti": rng.uniform(size=400), "home": home})
    >>> bad = (rng.uniform(size=400) < frame["dti"]).astype(int)
    >>> model = LightGBMModel(n_estimators=5, early_stopping_rounds=0).fit(frame, bad)
    >>> p_bad = model.predict_proba(frame)[:, 1]
    >>> ref = reference_point(model, frame, p_bad, cutoff=0.5, side="below", min_rows=20)
    >>> ref.n_rows >= 20, sorted(ref.values)
    (True, ['dti', 'home'])
    """
    if not band > 0 or not math.isfinite(band):
        raise ConfigError(f"band must be a positive number; got {band!r}.")
    if side not in ("above", "below"):
        raise ConfigError(f"side must be 'above' or 'below'; got {side!r}.")
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise ConfigError(f"min_rows must be a positive integer; got {min_rows!r}.")
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (len(frame),):
        raise DataValidationError(
            f"scores must hold one score per row of frame ({len(frame)}); got shape {s.shape!r}."
        )
    if not np.isfinite(s).all():
        raise DataValidationError(
            f"scores hold {int((~np.isfinite(s)).sum())} missing or infinite value(s); "
            "score every row or drop the unscored ones."
        )
    dist = s - cutoff if side == "above" else cutoff - s
    on_side = dist >= 0 if side == "above" else dist > 0
    if not on_side.any():
        raise DataValidationError(
            f"No row scores {side} the cutoff {cutoff!r} (scores range from {s.min():.6g} "
            f"to {s.max():.6g}); check the cutoff's scale or pass rows from both sides."
        )
    used = float(band)
    rows = on_side & (dist <= used)
    while rows.sum() < min_rows and rows.sum() < on_side.sum():
        used *= 2.0
        rows = on_side & (dist <= used)
    if used != band:
        log.info(
            "Reference point: band widened from %g to %g to hold %d row(s).",
            band,
            used,
            int(rows.sum()),
        )
    schema = model.schema_
    X = schema.encode(frame.iloc[np.flatnonzero(rows)])
    values: dict[str, Any] = {}
    encoded = np.full(len(schema), np.nan)
    for j, spec in enumerate(schema.features):
        col = X[:, j]
        col = col[~np.isnan(col)]
        if not len(col):
            values[spec.name] = None
            continue
        if spec.kind == "categorical":
            counts = np.bincount(col.astype(np.int64), minlength=len(spec.categories))
            code = int(np.argmax(counts))  # first of the most frequent
            encoded[j] = float(code)
            values[spec.name] = spec.categories[code]
        else:
            encoded[j] = float(col.mean())
            values[spec.name] = float(encoded[j])
    return ReferencePoint(
        features=tuple(schema.names),
        encoded=encoded,
        values=values,
        cutoff=float(cutoff),
        band=used,
        side=side,
        n_rows=int(rows.sum()),
    )


__all__ = [
    "ReasonCode",
    "ReferencePoint",
    "TreeExplainer",
    "reason_codes",
    "reference_point",
]
