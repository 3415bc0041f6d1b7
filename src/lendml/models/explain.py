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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lendml.errors import ConfigError, DataValidationError
from lendml.models.reasons import ReasonCode, ReferencePoint, reason_codes
from lendml.models.schema import FeatureSchema

if TYPE_CHECKING:
    import lightgbm as lgb

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


__all__ = ["TreeExplainer"]
