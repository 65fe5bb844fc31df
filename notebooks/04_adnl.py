# %% [markdown]
# # ADNL: anomaly detection with negative learning
#
# *Source: J. Lee, M. Astrid, M. Z. Zaheer, S.-I. Lee, "Deep Visual Anomaly Detection with
# Negative Learning", 2021.*
#
# **Why autoencoders reconstruct anomalies too.** An autoencoder trained on normal images learns
# to copy images through a narrow code. Nothing in that objective says "and fail on anything
# else": strokes, edges and blobs are shared by normal and abnormal digits, so an autoencoder
# trained on nine digits reconstructs a 1 or a 7 just as well. Its reconstruction error then
# does not separate them (the paper's unsupervised baseline averages 49.7% AUROC on MNIST).
#
# **Negative learning.** When anomalies are labelled, use them against the autoencoder. With
# encoder and decoder parameters $\theta$, normal images $x_i$ and labelled anomalies $y_j$:
#
# $$\text{positive learning (eq. 2):}\quad \min_\theta \sum_i \lVert \hat x_i - x_i
# \rVert_2^2, \qquad \text{negative learning (eq. 3):}\quad \max_\theta \sum_j \lVert
# \hat y_j - y_j \rVert_2^2,$$
#
# both on the same parameters, batch by batch as in Algorithm 1 (a normal batch takes a positive
# step, an anomaly batch a negative one). A bounded variant (section 4.6, eq. 4) minimises
# $\sum_j \exp(-(\hat y_j - y_j)^2)$ on anomalies instead. The base model is an adversarial
# autoencoder (AAE): a latent discriminator pushes the codes of normal images towards a
# Gaussian prior. The code lives in `adlib/methods/adnl.py`.

# %% tags=["parameters"]
QUICK = False            # quick mode: small subsets, 2 epochs (CI)
DATA_ROOT = None         # None: use $ADLIB_DATA
ANOMALY = 7              # the digit taken as the anomaly; the other nine are normal
UNSEEN = 1               # a second anomaly digit never seen in training (unseen-anomaly test)
SEED = 0
EPOCHS = 5               # the paper trains 100 epochs; the development split's budget on CPU
N_LABELLED_SWEEP = [0, 10, 100, 1000, "all"]  # labelled anomalies; "all": the paper's protocol
N_VAL_ANOMALIES = 100    # labelled anomalies held out for the validation AUROC (Fig 3)
MAX_TRAIN_QUICK = 3000   # training normals in quick mode
MAX_TEST_QUICK = 2000    # test images in quick mode (stratified)
INK_SEEDS = [0, 1, 2]    # seeds of the ink-score baseline over the ten digits (step 9)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from adlib import metrics, plots
from adlib.bench import REPO
from adlib.data import DataError, load_dataset
from adlib.methods.adnl import ADNL
from adlib.protocols import anomaly_class
from adlib.results import load_results, per_class_table

if QUICK:
    torch.set_num_threads(1)
epochs = 2 if QUICK else EPOCHS
sweep = [0, 10, "all"] if QUICK else N_LABELLED_SWEEP
caps = dict(max_train=MAX_TRAIN_QUICK if QUICK else None,
            max_test=MAX_TEST_QUICK if QUICK else None)
RESULTS = REPO / "results"
print(f"quick={QUICK}: anomaly digit {ANOMALY}, {epochs} epochs, labelled anomalies {sweep}")

# %% [markdown]
# ## Step 1: the protocol as the paper ran it (section 4.4)
#
# One digit is the anomaly, the other nine are normal. MNIST's train and test splits are pooled
# and re-split 8:2, stratified by digit. The paper does not say how many anomalies it labelled,
# but it weighed the negative loss 10 times "because the ratio of normal and abnormal data was
# 10:1": with one anomaly digit in ten, that is **every training image of the anomaly digit
# labelled** (about 5,600 against 50,000 normals), a nearly supervised setting. That is our
# *paper* protocol (`anomaly_class`'s default, `n_labelled="all"`); 10, 100 or 1,000 labelled
# anomalies are the book's few-shot extension. The unsupervised baseline trains on the same
# normal images and sees no anomaly. Here `N_VAL_ANOMALIES` labelled anomalies are kept apart
# for the validation curve of step 5; the test set is never used for any choice.

# %%
try:
    train_set = load_dataset("mnist", "train", root=DATA_ROOT)
    test_set = load_dataset("mnist", "test", root=DATA_ROOT)
    HAVE_DATA = True
except DataError as err:
    HAVE_DATA = False
    print(f"NOTE: MNIST is not available here, so the cells below only say so.\n  {err}")

if HAVE_DATA:
    split = anomaly_class("mnist", ANOMALY, SEED, preprocess=ADNL.preprocess,
                          train_set=train_set, test_set=test_set, **caps)
    val_anomalies = split.X_anomalies[:N_VAL_ANOMALIES]
    labelled_pool = split.X_anomalies[N_VAL_ANOMALIES:]
    if QUICK:  # the protocol's 9 : 1 of normals to labelled anomalies, against the capped normals
        labelled_pool = labelled_pool[:len(split.X_train) // 9]
    print(f"{len(split.X_train)} training normals, {len(split.X_val)} validation normals, "
          f"{len(labelled_pool)} labelled anomalies (+{len(val_anomalies)} for validation); "
          f"test: {len(split.X_test)} images, {int(split.y_test.sum())} anomalies")


def train(n_labelled, negative="naive", **kwargs):
    """An ADNL fitted on this notebook's split with ``n_labelled`` (a count or "all") labelled
    anomalies; 0 is the unsupervised AAE."""
    anomalies = labelled_pool if n_labelled == "all" else labelled_pool[:n_labelled]
    det = ADNL(num_epochs=epochs, negative=negative, seed=SEED, verbose=False, **kwargs)
    return det.fit(split.X_train, split.X_val, X_anomalies=anomalies if len(anomalies) else None,
                   X_val_anomalies=val_anomalies)


# %% [markdown]
# ## Step 2: Algorithm 1's schedule, and the unsupervised AAE against negative learning
#
# Algorithm 1 loops over the data and takes a positive step on a normal batch and a negative
# step on an anomaly batch, with no oversampling: an epoch visits each labelled anomaly once.
# With $N$ normal and $M$ anomaly batches an epoch, `ADNL` interleaves them in proportion: after
# the $i$-th normal batch, $\lceil iM/N \rceil$ anomaly batches are done (every 8th step with
# all 7s labelled: $N = 176$, $M = 22$; a single negative step an epoch with 100 labelled).
# Each normal batch also takes the AAE's two prior-matching steps. The optimiser is Adam "with
# the parameters of [26]", Kingma and Ba's (learning rate $10^{-3}$, $\beta = (0.9, 0.999)$),
# batch 256.
#
# *Which epoch is kept.* The unsupervised AAE keeps the epoch whose held-out normals it
# reconstructs best; negative learning keeps the last one (the paper trains a fixed budget).
#
# *Batch norm.* The paper's networks use batch normalisation, and a separate negative step on
# an anomaly-only batch has to pick statistics for it. Both choices open a shortcut that is not
# anomaly detection (step 11 measures them): the anomaly batch's own statistics let the network
# fail anomalies through statistics no test batch has (`batch_stats="anomaly"`, revision 1);
# the normals' running statistics let the negative step raise every image's test-time error
# through the lag of those statistics, which the positive steps, normalised by their own batch,
# never see (`batch_stats="running"`, revision 2). `ADNL` therefore adds the anomalies due to
# the normal batch and takes one step on
#
# $$\frac{1}{B}\sum_{i \in \text{batch}} \lVert \hat x_i - x_i \rVert^2 \;-\;
# \frac{1}{B_a}\sum_{j \in \text{due}} \lVert \hat y_j - y_j \rVert^2
# \qquad (\text{per-pixel means}),$$
#
# with $B_a$ the size of Algorithm 1's anomaly batches, so each anomaly weighs what it weighs
# in a separate negative step. Batch norm normalises normals and anomalies together, as a test
# batch that mixes them (`batch_stats="joint"`, revision 3, the default).

# %%
if HAVE_DATA:
    models = {"unsupervised AAE": train(0),
              "negative learning (all labelled)": train("all")}
    scores = {name: m.score(split.X_test) for name, m in models.items()}
    for name, s in scores.items():
        print(f"{name:34s} test AUROC {100 * metrics.auroc(split.y_test, s):.2f}%")
    steps = models["negative learning (all labelled)"].history_[0]["negative_steps"]
    print(f"negative steps an epoch: {steps} (normal batches: "
          f"{-(-len(split.X_train) // 256)})")

# %% [markdown]
# ## Step 3: what the two models reconstruct (Fig 6)
#
# Top: test inputs (four normal digits, then four of the anomaly digit). Below: each model's
# reconstruction. The unsupervised AAE reconstructs the anomalies almost as well as the normal
# digits; negative learning fails on them on purpose (the paper saw inverted pixels).

# %%
if HAVE_DATA:
    normal_idx = np.flatnonzero(split.y_test == 0)[:4]
    anomal_idx = np.flatnonzero(split.y_test == 1)[:4]
    x = split.X_test[np.r_[normal_idx, anomal_idx]]
    rows = [x] + [m.network_.eval()(x).detach() for m in models.values()]
    fig, axes = plt.subplots(1, 3, figsize=(15, 2.6))
    for ax, imgs, title in zip(axes, rows, ["input", *models]):
        plots.image_grid(imgs, title, ax=ax, nrow=8)
    fig.suptitle(f"4 normal digits, then 4 of digit {ANOMALY}")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Step 4: score distributions (Fig 5) and ROC curves (Fig 2)
#
# The score is the reconstruction error, min-max scaled to [0, 1] for the plot (the paper's
# presentation; scaling changes no AUROC).

# %%
if HAVE_DATA:
    fig, axes = plt.subplots(1, 3, figsize=(16, 3.8))
    for ax, (name, s) in zip(axes, scores.items()):
        scaled = (s - s.min()) / max(np.ptp(s), 1e-12)
        plots.score_histogram(scaled, split.y_test, name, ax=ax,
                              xlabel="reconstruction error (scaled to [0, 1])")
    plots.roc_curves({name: (split.y_test, s) for name, s in scores.items()},
                     f"ROC, anomaly digit {ANOMALY}", ax=axes[2])
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Step 5: AUROC during training on a validation split (Fig 3)
#
# The validation AUROC uses held-out normals and the `N_VAL_ANOMALIES` labelled anomalies kept
# apart from training and test. It is logged, never used to pick the epoch (step 2 says which
# epoch each model keeps).

# %%
if HAVE_DATA:
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, m in models.items():
        ax.plot([r["epoch"] + 1 for r in m.history_], [r["val_auroc"] for r in m.history_],
                "o-", label=name)
    ax.set(title="validation AUROC per epoch", xlabel="epoch", ylabel="AUROC", ylim=(0, 1.02))
    ax.legend()
    plt.show()

# %% [markdown]
# ## Step 6: naive against scaled negative loss (Table 4)

# %%
if HAVE_DATA:
    scaled_model = train("all", negative="scaled")
    table4 = pd.DataFrame({
        "negative loss": ["naive, eq. 3", "scaled, eq. 4"],
        "test AUROC (%)": [100 * metrics.auroc(split.y_test, scores[list(models)[1]]),
                           100 * metrics.auroc(split.y_test, scaled_model.score(split.X_test))],
        "paper, lobby data (mean of 8)": [89.01, 89.19]}).set_index("negative loss")
    display(table4.round(2))

# %% [markdown]
# ## Step 7: how many labelled anomalies? (a curve the paper lacks)
#
# The test AUROC against the number of labelled anomalies, from none (the unsupervised AAE)
# to all of them (the paper's protocol), on this notebook's digit. Each labelled anomaly joins
# one normal batch an epoch, so fewer labels also mean less negative learning: 10 labelled
# anomalies join 10 of an epoch's normal batches, each weighing a tenth of Algorithm 1's single
# negative step on them.

# %%
if HAVE_DATA:
    curve = []
    for n in sweep:
        m = models["unsupervised AAE"] if n == 0 else train(n)
        curve.append({"labelled anomalies": len(labelled_pool) if n == "all" else n,
                      "AUROC": metrics.auroc(split.y_test, m.score(split.X_test))})
    curve = pd.DataFrame(curve)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.semilogx(curve["labelled anomalies"].clip(lower=1), curve["AUROC"], "o-",
                label="negative learning (0 plotted at 1: the unsupervised AAE)")
    ax.set(title=f"test AUROC against labelled anomalies (digit {ANOMALY})",
           xlabel="labelled anomalies (log scale)", ylabel="AUROC")
    ax.legend(fontsize=8)
    plt.show()

# %% [markdown]
# ## Step 8: an anomaly never seen in training
#
# The question the paper raises but never measures: negative learning on every training image of
# digit `ANOMALY`, tested on digit `UNSEEN` as the anomaly (both digits are removed from the
# normal data). Does pushing one kind of anomaly away help against another?

# %%
if HAVE_DATA:
    unseen = anomaly_class("mnist", ANOMALY, SEED, test_anomaly=UNSEEN,
                           preprocess=ADNL.preprocess, train_set=train_set, test_set=test_set,
                           **caps)
    rows = []
    for name, anomalies in [("unsupervised AAE", None),
                            (f"negative learning on digit {ANOMALY}", unseen.X_anomalies)]:
        m = ADNL(num_epochs=epochs, seed=SEED, verbose=False).fit(
            unseen.X_train, unseen.X_val, X_anomalies=anomalies)
        rows.append({"model": name, f"AUROC on unseen digit {UNSEEN} (%)":
                     100 * metrics.auroc(unseen.y_test, m.score(unseen.X_test))})
    display(pd.DataFrame(rows).set_index("model").round(2))

# %% [markdown]
# ## Step 9: every digit (Table 1), from the committed benchmark runs
#
# ```
# python -m adlib bench adnl --dataset mnist --classes all --seeds 0 1 2    # the paper's protocol
# python -m adlib bench adnl --dataset mnist --classes all --seeds 0 1 2 --protocol n_labelled=0
# ```
#
# **What does the paper's baseline of 49.7 mean?** A detector that scores each image by its
# total ink, $s(x) = \sum_p x_p$, needs no training at all. Its AUROC is below 50 for digits
# with less ink than the rest (a 1) and above for those with more (a 0, an 8). We compute it on
# the same splits and print it beside the paper's baseline: an autoencoder whose error grows
# with the ink, reconstructing every digit about equally well, scores like it.

# %%
PAPER_TABLE_1 = pd.DataFrame(
    [[73.57, 17.06, 62.54, 55.48, 43.33, 45.16, 56.41, 41.81, 58.63, 42.91, 49.69],
     [99.64, 99.59, 98.99, 99.40, 99.34, 99.11, 99.14, 98.82, 98.86, 98.17, 99.11]],
    index=["Unsupervised (paper)", "Negative learning (paper)"],
    columns=[*range(10), "Mean"])
if HAVE_DATA:
    ink = pd.DataFrame([
        {"digit": d, "seed": s,
         "AUROC": 100 * metrics.auroc(sp.y_test, sp.X_test.flatten(1).sum(1))}
        for s in (INK_SEEDS[:1] if QUICK else INK_SEEDS) for d in range(10)
        for sp in [anomaly_class("mnist", d, s, n_labelled=0, preprocess=ADNL.preprocess,
                                 train_set=train_set, test_set=test_set, **caps)]])
    ink_row = ink.groupby("digit")["AUROC"].mean().to_frame("total ink (ours, no training)").T
    ink_row["Mean"] = ink_row.mean(axis=1)
    paper_base = PAPER_TABLE_1.loc["Unsupervised (paper)", list(range(10))].to_numpy(float)
    corr = np.corrcoef(paper_base, ink_row[list(range(10))].to_numpy(float)[0])[0, 1]
    print(f"correlation over the ten digits, paper's baseline against total ink: {corr:.2f}")

path = RESULTS / "adnl_mnist.jsonl"
rows = load_results(path) if path.exists() else pd.DataFrame()
if not rows.empty:
    rows = rows[~rows["quick"]]
names = {"default": "ours: negative learning (all labelled)",
         "default+n_labelled=0": "ours: unsupervised AAE"}
table1 = rows[rows["variant"].isin(list(names))] if not rows.empty else rows
parts = [PAPER_TABLE_1] + ([ink_row] if HAVE_DATA else [])
if table1.empty:
    print("no full ADNL runs of Table 1 are committed yet; they come from the commands above")
else:
    ours = per_class_table(table1, by="variant").rename(index=names)
    parts.append(ours.reindex(columns=PAPER_TABLE_1.columns))  # digits not run yet: "-"
    missing = sorted(set(range(10)) - set(table1["normal_class"]))
    if missing:
        print(f"digits {missing} have no committed run yet: our Mean is over the others")
rev2_path = RESULTS / "adnl_mnist_rev2.jsonl"
if rev2_path.exists():  # separate negative steps on the running statistics (step 11)
    rev2 = load_results(rev2_path)
    rev2 = rev2[(rev2["variant"] == "default") & ~rev2["quick"]]
    label = "ours, revision 2: separate negative steps (seed 0; Mean over digits run)"
    parts.append(per_class_table(rev2, by="variant").rename(index={"default": label})
                 .reindex(columns=PAPER_TABLE_1.columns))
display(plots.table(pd.concat(parts).round(2)))
if not table1.empty:
    display(plots.table(ours[["seeds", "std over seeds"]]))

# %% [markdown]
# ## Step 10: the labelled-anomaly curve for digits 1, 7 and 9, and the unseen anomaly
#
# ```
# python -m adlib bench adnl --dataset mnist --classes 1 7 9 --seeds 0 1 2 --protocol n_labelled=N
# python -m adlib bench adnl --dataset mnist --classes 7 --seeds 0 1 2 --protocol test_anomaly=1
# python -m adlib bench adnl --dataset mnist --classes 7 --seeds 0 1 2 --protocol test_anomaly=1 n_labelled=0
# ```
# for `N` in 10, 100, 1000 (0 and "all" are Table 1's rows).
#
# Read the curve with step 7's schedule in mind: under Algorithm 1's proportional schedule an
# anomaly is negated once an epoch, so few labels mean few and light negative terms (10 labels:
# 10 terms an epoch, each a tenth of a full negative step), so the curve starts near the
# unsupervised AAE. Over seeds 0 and 1, 10 labels move digits 1 / 7 / 9 from 13.58 / 63.14 /
# 61.19 (none) to 26.52 / 67.77 / 59.56, 100 to 50.87 / 83.82 / 61.78, 1000 to 99.46 / 99.09 /
# 89.44. Digit 9 does not rise at 10 labels on either seed (61.89 to 60.05, 60.50 to 59.08) and
# barely at 100, so the curve is not increasing there. A guess we have not tested: a 9 shares
# strokes with the normal 4s and 7s, so a few negated 9s may cost those normals as much as the
# 9s. The unseen anomaly at seed 0
# (`default+test_anomaly=1` below): labelling every 7 lifts the AUROC on 1s to 81.27, from
# 18.53 with no label (`default+n_labelled=0,test_anomaly=1`, the same split): negative
# learning on one digit helps against another here. A count or seed not run yet is missing
# from the table (`count` says how many seeds each cell holds).

# %%
def labelled_count(variant):
    """The labelled-anomaly count a row's variant names (``default`` is every one)."""
    if variant == "default":
        return "all"
    return variant.replace("default+n_labelled=", "")


if not rows.empty:
    few = rows[rows["normal_class"].isin([1, 7, 9])
               & rows["variant"].str.match(r"^default(\+n_labelled=\d+)?$")].copy()
    few["labelled anomalies"] = few["variant"].map(labelled_count)
    order = ["0", "10", "100", "1000", "all"]
    few["AUROC (%)"] = 100 * few["auroc"]
    curve = (few.groupby(["labelled anomalies", "normal_class"])["AUROC (%)"]
             .agg(["mean", "std", "count"]).unstack("normal_class"))
    curve = curve.reindex([o for o in order if o in curve.index])
    display(plots.table(curve.round(2)))
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for digit in sorted(few["normal_class"].unique()):
        m, sd = curve[("mean", digit)], curve[("std", digit)]
        ax.errorbar(range(len(m)), m, yerr=sd.fillna(0), marker="o", capsize=3,
                    label=f"digit {digit}")
    ax.set_xticks(range(len(curve.index)), curve.index)
    ax.set(title="test AUROC against labelled anomalies (mean and std over seeds)",
           xlabel="labelled anomalies of the digit", ylabel="AUROC (%)")
    ax.legend()
    plt.show()
    unseen_rows = rows[rows["variant"].str.contains("test_anomaly")]
    if len(unseen_rows):
        display(plots.table(unseen_rows.assign(AUROC=100 * unseen_rows["auroc"])
                            .groupby(["variant", "normal_class"])["AUROC"]
                            .agg(["mean", "std", "count"]).round(2)))

# %% [markdown]
# ## Step 11: does batch norm on anomaly-only batches give a shortcut? (development split)
#
# `python -m adlib bench adnl --dev` holds a fifth of the anomaly digit's training images out of
# the labelled pool and evaluates on them and the validation normals: no test image is read.
# Each row logs the development AUROC of every epoch.

# %%
# the min-MSE file holds a run whose kept epoch was the one with the lowest normal MSE (the
# rule before negative learning kept its last epoch); its per-epoch curve is the same training
dev_paths = [RESULTS / f for f in ("adnl_dev_mnist.jsonl", "adnl_dev_mnist_rev2.jsonl",
                                   "adnl_dev_mnist_min_mse_selection.jsonl")]


def batch_stats(params):
    """How a row's negative loss met batch norm (revision 2 rows name it by a flag)."""
    if "batch_stats" in params:
        return params["batch_stats"]
    return "anomaly" if params.get("negative_batch_stats") else "running"


dev_paths = [str(f) for f in dev_paths if f.exists()]
dev = load_results(*dev_paths) if dev_paths else pd.DataFrame()
if not dev.empty:
    dev = dev[~dev["quick"]]
if dev.empty:
    print("no development runs are committed yet")
else:
    dev_table = pd.DataFrame({
        "digit": dev["normal_class"], "revision": [c.get("revision", 1) for c in dev["config"]],
        "variant": dev["variant"].str.replace("+dev", ""),
        "labelled": [p["n_labelled"] for p in dev["protocol"]],
        "negative loss meets batch norm": [batch_stats(p) for p in dev["params"]],
        "weight": [p["anomaly_weight"] for p in dev["params"]],
        "epochs": dev["epochs_run"], "kept epoch": dev["best_epoch"] + 1,
        "kept epoch's AUROC (%)": 100 * dev["auroc"],
        "last epoch's AUROC (%)": [100 * hist[-1]["track_auroc"] for hist in dev["history"]],
        "best epoch's AUROC (%)": [100 * max(h["track_auroc"] for h in hist)
                                   for hist in dev["history"]],
        "last epoch's normal MSE": [hist[-1].get("val_mse", hist[-1].get("val_metric"))
                                    for hist in dev["history"]]})
    display(plots.table(dev_table.sort_values(["digit", "revision", "variant"]).round(2)))
    def run_label(p):
        """What a development run changed: batch-norm handling, weight, loss, learning rate."""
        return (f"{batch_stats(p)}, weight {p['anomaly_weight']:g}"
                + ("" if p["negative"] == "naive" else f", {p['negative']}")
                + ("" if p["lr"] == 1e-3 else f", lr {p['lr']:g}"))

    labels = sorted({run_label(p) for p in dev["params"]})
    colour = dict(zip(labels, plt.cm.tab10.colors))  # one colour per setting in every panel
    digits = sorted(dev["normal_class"].unique())
    fig, axes = plt.subplots(1, len(digits), figsize=(4 * len(digits), 3.6), squeeze=False,
                             sharey=True)
    for ax, digit in zip(axes[0], digits):
        for _, r in dev[dev["normal_class"] == digit].iterrows():
            label = run_label(r["params"])
            ax.plot([h["epoch"] + 1 for h in r["history"]],
                    [100 * h["track_auroc"] for h in r["history"]], marker="o", label=label,
                    color=colour[label])
        ax.set(title=f"digit {digit} (every anomaly labelled)", xlabel="epoch",
               ylabel="development AUROC (%)")
        ax.legend(fontsize=7)
    fig.suptitle("development AUROC per epoch: how the negative loss meets batch norm")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# **What the development split says** (every anomaly labelled, seed 0, 10 epochs, weight 1
# unless the table says otherwise):
#
# * **Revisions 1 and 2: both separate negative steps are shortcuts.** With the anomaly
#   batch's own statistics (revision 1; digit 7) the development AUROC peaks at 96.0 after two
#   epochs, then falls to 66.7, while the held-out normals' MSE falls to 0.054: the network
#   fails the anomalies through their batch statistics, which no test batch has. With the
#   normals' running statistics (revision 2) the held-out normals' MSE, measured as the test
#   measures it (eval mode), sits at 0.16-0.40 and jumps to 0.5-0.9 on some epochs (0.05-0.06
#   for an autoencoder without negative learning), and the AUROC ends at 91.2 (digit 3), 89.6
#   (4), 82.4 (9), 96.8 (7): the negative step raises every image's test-time error through the
#   lag of the running statistics, and the positive steps, normalised by their own batch, never
#   see it. Smaller learning rates, the scaled loss (eq. 4) and a weight of 0.1 only damp it
#   (table above).
# * **Revision 3: one step on normals and anomalies together** (`batch_stats="joint"`, the
#   default) removes both: digit 3 ends at 99.9, 4 at 99.8, 9 at 99.7, each reaching 99.4 or
#   more after epoch 2 and staying there, with the normals' MSE at 0.06-0.10. The negative
#   loss settles at about -3.4 (an MSE of 3.4 on inputs in [-1, 1]: the decoder paints the
#   anomalies' negative, the paper's "inverted pixels"). The low scores of revision 2 were our
#   code's, not the budget's.
# * **Budget.** The curves level off after epoch 2, so Table 1 runs **5 epochs** (about 7
#   minutes a run on 2 CPU cores); the paper's 100 did not fit, and revision 2's rows ran 10.
# * **Which epoch to keep.** Under negative learning the held-out normals' MSE is no guide to
#   the AUROC (revision 2, digit 7: lowest at epoch 2 with an AUROC of 68.5), so negative
#   learning keeps its last epoch, as the paper's fixed budget does.

# %% [markdown]
# ## What differs from the paper
#
# * **Input**: MNIST's 28 x 28 grey images instead of 64 x 64 RGB (CPU budget; `--protocol
#   size=64` runs the paper's size).
# * **Budget**: `EPOCHS` epochs instead of 100, chosen on the development split (step 11);
#   batch 256 and Adam at Kingma and Ba's settings as in the paper.
# * **One step, not two** (step 2): the negative loss joins the positive step on the normal
#   batch, with each anomaly weighed as in Algorithm 1's separate negative step, because a
#   separate negative step under batch norm is a shortcut either way (step 11).
# * **Layers and code size** (not given): DCGAN-style, code of 16, see the module docstring.
# * **Labelled anomalies**: the paper's protocol labels every training image of the anomaly
#   digit (Table 1); 0, 10, 100 and 1000 are the book's extension (step 10).
# * **Model selection**: the unsupervised AAE keeps the epoch with the lowest reconstruction
#   error of held-out normals; negative learning keeps its last epoch, as the paper's fixed
#   budget does (the normals' error rises as the negative steps bite, so its minimum would keep
#   an early, weak epoch: step 11's first row). No anomaly label selects an epoch.
#
# ## Exercises
#
# 1. Set `anomaly_weight=10` (the paper's weighted variant). Does the AUROC move?
# 2. Negative-learn on two anomaly digits at once. Does the unseen-digit AUROC of step 8 rise?
# 3. Turn the latent discriminator off (`adversarial=False`). How much does the AAE's prior
#    matter for negative learning?

# %% [markdown] tags=["solution"]
# ### Solution to exercise 1

# %% tags=["solution"]
if HAVE_DATA:
    # quick mode: both weights on 768 training normals (a pair for about one quick fit);
    # full mode: step 2's model is the weight-1 run and only weight 10 is trained
    pick = torch.randperm(len(split.X_train), generator=torch.Generator().manual_seed(SEED))
    X_sub = split.X_train[pick[:768]] if QUICK else split.X_train
    X_sub_val = split.X_val[:256] if QUICK else split.X_val

    def with_weight(weight):
        """Negative learning on every labelled anomaly (85 in quick mode: the protocol's 9 : 1
        against the 768 normals), the negative loss times ``weight``."""
        det = ADNL(num_epochs=epochs, anomaly_weight=weight, seed=SEED, verbose=False)
        anomalies = labelled_pool[:85] if QUICK else labelled_pool
        return det.fit(X_sub, X_sub_val, X_anomalies=anomalies)

    step2_model = models["negative learning (all labelled)"]
    weighted = {1: with_weight(1) if QUICK else step2_model, 10: with_weight(10)}
    by_weight = {w: m.score(split.X_test) for w, m in weighted.items()}
    weight_table = pd.DataFrame({
        "test AUROC (%)": {w: 100 * metrics.auroc(split.y_test, s) for w, s in by_weight.items()},
        "test normals' reconstruction MSE": {w: s[split.y_test == 0].mean()
                                             for w, s in by_weight.items()}})
    display(weight_table.rename_axis("anomaly_weight").round(3))
    moved = weight_table["test AUROC (%)"].diff().iloc[-1]
    mse = weight_table["test normals' reconstruction MSE"]
    louder = ("the normals' error rises with it: the louder negative steps also spoil the "
              "normal reconstructions that the positive steps build" if mse[10] > mse[1] else
              "the normals' reconstructions hold, so the extra push acts on the anomalies only")
    print(f"Conclusion: anomaly_weight=10 moves the test AUROC by {moved:+.1f} points"
          + (" (within noise)" if abs(moved) < 1 else "")
          + f" and the test normals' reconstruction MSE from {mse[1]:.3f} to {mse[10]:.3f}. "
          "The naive negative loss (-MSE) is unbounded, so the weight only makes the negative "
          f"steps louder; here {louder}."
          + (" Quick mode: 768 normals and 2 epochs, so read the sign, not the size." if QUICK
             else ""))
