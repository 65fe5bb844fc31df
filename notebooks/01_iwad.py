# %% [markdown]
# # IWAD: importance-weighted adversarial transfer of anomaly detection
#
# *Source: C. Fan, F. Zhang, P. Liu, X. Sun, H. Li, T. Xiao, W. Zhao, X. Tang, "Importance
# Weighted Adversarial Discriminative Transfer for Anomaly Detection". Authors' code:
# `fancangning/anomaly_detection_transfer`.*
#
# **The setting.** A detector has been built in one domain (the *source*: USPS digits, where
# only normal images, the 0s, were collected) and must now work in another (the *target*: MNIST
# digits, drawn differently). In the target we have images, but no labels, and some of them are
# anomalies. Training on the source alone fails (the domains differ); fine-tuning on the target
# teaches the model to reconstruct the anomalies too.
#
# **The idea.** Pretrain an autoencoder on the source and, lightly, the target (eq. 7). Then
# give every image an *importance weight* that falls with its reconstruction loss (eq. 5):
# anomalies, reconstructed worst, get small weights. Align the target with the source through a
# domain classifier behind a gradient reversal layer, and weight both the alignment and the
# reconstruction by the importance weights (eqs. 6, 8). The score is the reconstruction error.
# The code lives in `adlib/methods/iwad.py` (and the MemAE baselines in `adlib/methods/memae.py`).
#
# **Two protocols.** *Clean*: each task pretrains on its own source and target. *Paper*: as
# the authors' code runs it. Their `Train.py` loads one pretrained file,
# `MNISTtoUSPS ... anomalyrate_0.25/model-pretrain.pt`, for every digit run: `--load_pretrain`
# defaults to true and argparse's `type=bool` reads any value given as true. So every U -> M
# run starts from a network pretrained with **MNIST's 0s as its clean source**, the target's
# own normal class, and every M -> U run from the rate-0.25 pretraining. We run both and show
# both.

# %% tags=["parameters"]
QUICK = False            # quick mode: small subsets, a few epochs (CI)
DATA_ROOT = None         # None: use $ADLIB_DATA
SOURCE, TARGET = "usps", "mnist"   # the task of the paper's Fig 2 (U -> M)
RATE = 0.25              # the target's anomaly rate (Table 1: 0.05 .. 0.45)
SEED = 0
EPOCHS = 20              # IWAD: 15 pretraining + 5 adversarial epochs (the authors: 100 + 100)
PRETRAIN_EPOCHS = 15     # an epoch is max(source, target) batches, as in the authors' code
PAPER_PRETRAIN = ("mnist", "usps", 0.25)  # the task whose stage 1 the authors' runs all load
MEMAE_EPOCHS = 30        # MemAE on the source, and again for fine-tuning on the target
ADV_WEIGHTS = [0.0, 2e-4, 2e-3, 2e-2]  # Fig 6: robustness to the adversarial loss weight
N_MONITOR = 300          # images per group whose losses and weights are followed per epoch
N_TRACK = 2000           # target training images whose AUROC is followed per epoch
MAX_QUICK = 300          # source normals, target normals and test images in quick mode

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from adlib import metrics, plots
from adlib.bench import REPO, TRANSFER_PREPROCESS
from adlib.data import DataError
from adlib.methods.iwad import IWAD
from adlib.methods.memae import MemAE
from adlib.papers import IWAD_RATES, IWAD_TABLE_1
from adlib.protocols import transfer
from adlib.results import load_results, row_config

if QUICK:
    torch.set_num_threads(1)
epochs, pretrain = (3, 2) if QUICK else (EPOCHS, PRETRAIN_EPOCHS)
memae_epochs = 2 if QUICK else MEMAE_EPOCHS
adv_weights = ADV_WEIGHTS[::2] if QUICK else ADV_WEIGHTS
cap = MAX_QUICK if QUICK else None
RESULTS = REPO / "results"
print(f"quick={QUICK}: {SOURCE} -> {TARGET}, anomaly rate {RATE}, IWAD {epochs} epochs "
      f"({pretrain} pretraining), MemAE {memae_epochs}")

# %% [markdown]
# ## Step 1: the transfer protocol (section 4.1)
#
# The source gives its training 0s only. The target gives all its training 0s plus other digits
# making `RATE` of the mixture, **without labels**. The test set is the target's test split at
# the same rate. Both domains become 3-channel 28 x 28 images in [-1, 1] (USPS is 16 x 16).

# %%
try:
    split = transfer(SOURCE, TARGET, RATE, SEED, preprocess=TRANSFER_PREPROCESS, root=DATA_ROOT,
                     max_source=cap, max_target=cap, max_test=cap)
    HAVE_DATA = True
    info = split.info
    print(f"source: {info['n_source']} normals (+{info['n_val']} held out); target mixture: "
          f"{info['n_target']} images, {info['n_target_anomalies']} of them anomalies; test: "
          f"{info['n_test']} images, {info['n_test_anomalies']} anomalies")
except DataError as err:
    HAVE_DATA = False
    print(f"NOTE: {SOURCE} or {TARGET} is not available here, so the cells below only say so."
          f"\n  {err}")

# %%
if HAVE_DATA:
    fig, axes = plt.subplots(3, 1, figsize=(10, 4.2))
    plots.image_grid(split.X_source[:16], f"source ({SOURCE}) normals", ax=axes[0], nrow=16)
    plots.image_grid(split.X_target[split.y_target == 0][:16], f"target ({TARGET}) normals",
                     ax=axes[1], nrow=16)
    plots.image_grid(split.X_target[split.y_target == 1][:16],
                     f"target anomalies (unlabelled in training)", ax=axes[2], nrow=16)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Step 2: the two stages, as the authors' code runs them
#
# With `L(x)` an image's mean squared reconstruction error (eq. 4), stage 1 (eq. 7) minimises
#
# $$\mathcal{L}_1 = \frac{1}{n_s}\sum_{x \in S} L(x) + \lambda \frac{1}{n_t}\sum_{x \in T} L(x),
# \qquad \lambda = 0.03,$$
#
# with Adam at a rate falling from 0.01 by 0.95 an epoch. Stage 2 (eq. 8) restarts Adam at the
# rate where stage 1 ended, 0.01 x 0.95^100 = 5.9e-5, still falling, and at every step weighs
# every image of the batch, source and target alike, by
#
# $$w(x) = \sigma\!\Big(k\big(1 - L(x)/m\big) + \Delta\beta(p)\Big),\qquad
# \Delta\beta(p) = 20\Big(\frac{2}{1+e^{-p}} - 1\Big),$$
#
# with $k = 190$: a near-hard cut-off at `m` that rises by 4.9 % of `m` as stage 2's progress `p` goes from 0 to 1
# (the authors' `sigmoid(-1e5 L + beta)`, beta 190 -> 199.2, written relative to its cut-off;
# we set `m` to the 99th percentile of the source losses after stage 1, "just above the source's
# per-image losses"). The weights are detached and not normalised. The loss is
#
# $$\mathcal{L}_2 = \overline{w L}_S + \lambda\, \overline{w L}_T
#   + \gamma\Big(\overline{w\,\ell(C(F(x)), d)} + \overline{\ell(C_0(F(x)), d)}\Big),$$
#
# `l` the binary cross-entropy of the domain label `d`. `C` sits behind a gradient reversal whose
# coefficient rises as 2/(1+exp(-p)) - 1 (at most 0.46); `C0`, IWAN's weight estimator, behind a
# zero-gradient layer: it learns the domains without moving the encoder. `gamma = 2e-3` is the
# authors' 5e-4 for a loss on pixels in [0, 1], ours being on [-1, 1] (4 times larger). We follow
# three groups of images, and the AUROC on `N_TRACK` target training images, through training;
# their labels serve the figures only.

# %%
if HAVE_DATA:
    rng = np.random.default_rng(SEED)

    def some(X, n=N_MONITOR):
        return np.sort(rng.choice(len(X), min(n, len(X)), replace=False))

    monitor = {"source normals": split.X_val[some(split.X_val)],
               "target normals": split.X_target[split.y_target == 0][
                   some(split.X_target[split.y_target == 0])],
               "target anomalies": split.X_target[split.y_target == 1][
                   some(split.X_target[split.y_target == 1])]}
    tracked = some(split.X_target, N_TRACK)
    iwad = IWAD(num_epochs=epochs, pretrain_epochs=pretrain, seed=SEED, verbose=not QUICK)
    iwad.track(split.X_target[tracked], split.y_target[tracked])
    iwad.fit(split.X_source, split.X_target, monitor=monitor)
    print(f"clean protocol: weight cut-off m = {iwad.cutoff_:.4f} (the 99th percentile of the "
          f"source losses after stage 1)")
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    plots.training_curves(iwad.history_, "IWAD (clean): reconstruction losses per epoch",
                          keys=["L_recon_source", "L_recon_target"], ax=axes[0])
    plots.training_curves(iwad.history_, "IWAD stage 2: domain losses and accuracy",
                          keys=["L_adv", "L_estimator", "domain_acc"], ax=axes[1])
    for ax in axes:
        ax.axvline(pretrain + 0.5, color="k", ls=":", lw=1)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Step 3: the paper's protocol, stage 1 on another task
#
# The same stage 2 on the same data, started from the stage 1 of `PAPER_PRETRAIN` (M -> U at
# rate 0.25), as the authors' digit runs all start. For U -> M this network has learnt MNIST's
# 0s as clean normals before it sees the task.

# %%
if HAVE_DATA:
    other = transfer(*PAPER_PRETRAIN[:2], PAPER_PRETRAIN[2], SEED,
                     preprocess=TRANSFER_PREPROCESS, root=DATA_ROOT, max_source=cap,
                     max_target=cap, max_test=cap)
    paper_iwad = IWAD(num_epochs=epochs, pretrain_epochs=pretrain, seed=SEED,
                      verbose=not QUICK)
    state = paper_iwad.pretrain(other.X_source, other.X_target)
    paper_iwad.track(split.X_target[tracked], split.y_target[tracked])
    paper_iwad.fit(split.X_source, split.X_target, monitor=monitor, init=state)
    print(f"paper protocol: stage 1 on {PAPER_PRETRAIN[0]} -> {PAPER_PRETRAIN[1]} at rate "
          f"{PAPER_PRETRAIN[2]}, then {len(paper_iwad.history_)} epochs of stage 2 here; "
          f"cut-off m = {paper_iwad.cutoff_:.4f}")

# %% [markdown]
# ## Step 4: is stage 2 stable?
#
# Per epoch: the source reconstruction loss (training batches), the AUROC of the reconstruction
# loss on `N_TRACK` target training images (a development measure: training images only, their
# labels used for this figure and nothing else), and the mean importance weight of target
# normals and anomalies (solid: eq. 5's weight; dashed: the estimator's `1 - sigmoid(C0)`). The
# paper-protocol run has no stage 1 here; its stage 2 is drawn over the same epochs. At full
# size (seed 0) the development AUROC fell over stage 2 from 78.5 to 78.0 (clean) and from 95.0
# to 94.1 (paper): stage 2 is stable, and small. Under the clean protocol the cut-off drops
# every target image (normals 0.000, anomalies 0.02: the target's normals are reconstructed 3-5
# times worse than the source's); under the paper's it keeps the normals (1.00) and most
# anomalies (0.83). The estimator's IWAN weight ranks anomalies above normals in both.

# %%
if HAVE_DATA:
    def per_epoch(model, offset):
        x = [offset + r["epoch"] + 1 for r in model.history_]
        mean_w = {(g, k): [r[g][k].mean() for r in model.monitor_history_]
                  for g in ("target normals", "target anomalies")
                  for k in ("weight", "iwan_weight")}
        return x, mean_w

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    runs = {"clean": (iwad, 0, "tab:blue"), "paper": (paper_iwad, pretrain, "tab:orange")}
    for name, (model, offset, color) in runs.items():
        x, mean_w = per_epoch(model, offset)
        axes[0].plot(x, [r["L_recon_source"] for r in model.history_], "o-", color=color,
                     label=name)
        axes[1].plot(x, [100 * r["track_auroc"] for r in model.history_], "o-", color=color,
                     label=name)
        for (group, kind), values in mean_w.items():
            axes[2].plot(x, values, color=color, ls="-" if kind == "weight" else "--",
                         marker="o" if group == "target normals" else "x",
                         label=f"{name}, {group}" + (" (C0)" if kind != "weight" else ""))
    axes[0].set(title="source reconstruction loss", xlabel="epoch", ylabel="mean MSE")
    axes[1].set(title="target training images: AUROC of the loss", xlabel="epoch",
                ylabel="AUROC (%)")
    axes[2].set(title="mean importance weight, target", xlabel="epoch", ylabel="mean w(x)",
                ylim=(-0.05, 1.05))
    for ax in axes:
        ax.axvline(pretrain + 0.5, color="k", ls=":", lw=1)
    axes[0].legend(fontsize="x-small")
    axes[1].legend(fontsize="x-small")
    axes[2].legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(f"IWAD {SOURCE} -> {TARGET}, rate {RATE}: stage 2 begins at the dotted line")
    plt.tight_layout()
    plt.show()
    for name, (model, _, _) in runs.items():
        stage2 = [100 * r["track_auroc"] for r in model.history_][-(epochs - pretrain):]
        print(f"{name}: development AUROC over stage 2 from {stage2[0]:.1f} to {stage2[-1]:.1f} "
              f"(range {min(stage2):.1f} .. {max(stage2):.1f})")

# %% [markdown]
# ## Step 5: reconstruction-loss distributions over training (Fig 2)
#
# The paper's Fig 2: as training goes on, target normals should move towards the source
# normals while target anomalies stay where they were (clean protocol).

# %%
if HAVE_DATA:
    shown = sorted({0, pretrain - 1, (pretrain + epochs) // 2, epochs - 1})
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.4), sharey=False)
    colors = {"source normals": "tab:green", "target normals": "tab:blue",
              "target anomalies": "tab:red"}
    for ax, epoch in zip(np.atleast_1d(axes), shown):
        row = iwad.monitor_history_[epoch]
        edges = np.histogram_bin_edges(np.concatenate([row[g]["loss"] for g in colors]), 40)
        for group, color in colors.items():
            ax.hist(row[group]["loss"], bins=edges, alpha=0.5, density=True, color=color,
                    label=group)
        ax.set(title=f"epoch {epoch + 1}", xlabel="reconstruction loss (MSE)", ylabel="density")
    np.atleast_1d(axes)[0].legend(fontsize="small")
    fig.suptitle(f"IWAD (clean) {SOURCE} -> {TARGET}: reconstruction losses during training")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Step 6: the importance weights after training
#
# Where the two rules put the monitored target images at the end of training: eq. 5's cut-off
# (drawn at the final progress) over their losses, and the estimator's IWAN weight. Images above
# the cut-off drop out of stage 2's loss.

# %%
if HAVE_DATA:
    groups = {"target normals": "tab:blue", "target anomalies": "tab:red"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    for ax, (name, model) in zip(axes, [("clean", iwad), ("paper", paper_iwad)]):
        last = model.monitor_history_[-1]
        edges = np.histogram_bin_edges(np.concatenate([last[g]["loss"] for g in groups]), 40)
        for group, color in groups.items():
            ax.hist(last[group]["loss"], bins=edges, density=True, alpha=0.4, color=color,
                    label=group)
        rule = ax.twinx()
        grid = np.linspace(0, edges[-1], 400)
        rule.plot(grid, model.importance_weights(torch.from_numpy(grid)).numpy(), "k-",
                  label="w(L)")
        rule.set(ylabel="importance weight w(L)", ylim=(-0.05, 1.05))
        ax.set(title=f"{name}: target losses after training and eq. 5", xlabel="loss L (MSE)",
               ylabel="density")
        ax.legend(fontsize="small", loc="center right")
    plt.tight_layout()
    plt.show()
    summary = pd.DataFrame({name: {f"{g}: {k}": model.monitor_history_[-1][g][k].mean()
                                   for g in groups for k in ("weight", "iwan_weight")}
                            for name, model in [("clean", iwad), ("paper", paper_iwad)]})
    display(summary.round(3))

# %% [markdown]
# ## Step 7: MemAE fine-tuned against IWAD (Fig 3)
#
# MemAE (Gong et al. 2019) is trained on the source normals, then fine-tuned on the unlabelled
# target mixture, anomalies included. Which model reconstructs the target's anomalies, and so
# hides them?

# %%
if HAVE_DATA:
    memae = MemAE(num_epochs=memae_epochs, seed=SEED, verbose=not QUICK)
    memae.fit(split.X_source, split.X_val)
    direct_scores = memae.score(split.X_test)
    memae.fine_tune(split.X_target)
    scores = {"MemAE (directly)": direct_scores, "MemAE (fine-tune)": memae.score(split.X_test),
              "IWAD (clean)": iwad.score(split.X_test),
              "IWAD (paper)": paper_iwad.score(split.X_test)}
    plots.roc_curves({k: (split.y_test, v) for k, v in scores.items()},
                     f"{SOURCE} -> {TARGET}, anomaly rate {RATE}: test ROC")
    plt.show()
    anomalies = split.X_test[split.y_test == 1][:10]
    with torch.no_grad():
        memae.network_.eval()
        iwad.network_.eval()
        rec_memae = memae.network_(anomalies)[0]
        rec_iwad = iwad.network_(anomalies)[0]
    fig, axes = plt.subplots(3, 1, figsize=(10, 3.8))
    plots.image_grid(anomalies, "anomalous target test images", ax=axes[0], nrow=10)
    plots.image_grid(rec_memae, "MemAE (fine-tune) reconstructions", ax=axes[1], nrow=10)
    plots.image_grid(rec_iwad, "IWAD (clean) reconstructions", ax=axes[2], nrow=10)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Step 8: robustness to the adversarial loss weight (Fig 6)
#
# The same task and seed (clean protocol) with the adversarial weight `gamma` scaled; 0 keeps
# only the importance-weighted reconstruction.

# %%
if HAVE_DATA:
    sweep = []
    for weight in adv_weights:
        model = IWAD(num_epochs=epochs, pretrain_epochs=pretrain, adv_weight=weight, seed=SEED,
                     verbose=False).fit(split.X_source, split.X_target)
        sweep.append({"adversarial weight": weight,
                      "test AUROC": metrics.auroc(split.y_test, model.score(split.X_test))})
    sweep = pd.DataFrame(sweep)
    display(sweep.round(3))
    ax = sweep.plot(x="adversarial weight", y="test AUROC", marker="o", legend=False,
                    figsize=(5, 3.4))
    ax.set(title=f"IWAD {SOURCE} -> {TARGET}: AUROC against the adversarial weight",
           xscale="symlog", xlabel="adversarial weight gamma", ylabel="test AUROC")
    ax.set_xscale("symlog", linthresh=1e-4)
    plt.show()

# %% [markdown]
# ## Step 9: Table 1, from the committed benchmark runs
#
# ```
# python -m adlib bench iwad --transfer usps mnist --seeds 0 1 2                 # clean
# python -m adlib bench iwad --transfer usps mnist --seeds 0 1 2 \
#     --pretrain-task mnist usps 0.25                                             # paper
# python -m adlib bench memae --transfer usps mnist --mode finetune --seeds 0 1 2
# python -m adlib bench memae --transfer usps mnist --mode source --seeds 0 1 2
# python -m adlib bench memae --transfer usps mnist --mode target_normals --seeds 0 1 2
# python -m adlib bench isolation_forest --transfer usps mnist --mode target --seeds 0 1 2
# ```
# (and the same with `--transfer mnist usps`). AUROC (%), mean ± standard deviation over seeds,
# beside the paper's. `IWAD (DANN recipe, rev. 1)` is our earlier reading of the paper
# (`recipe="dann"`: weights fixed after pretraining and normalised, DANN's reversal ramp to 1,
# adversarial weight 1, lambda 0.1, 10 + 30 epochs of source batches), kept as an ablation;
# `[adv_weight=0]` is its Fig 6 weight 0.

# %%
def row_name(row) -> str:
    """The table's name for a results row: IWAD by protocol and code revision, other
    detectors by their training mode."""
    if row["method"] != "iwad":
        return f"{row['method']} ({row['mode']})"
    config = row.get("config")
    if row_config({"config": config} if isinstance(config, dict) else {})["revision"] == 1:
        extra = "" if row["variant"] == "default" else f" [{row['variant']}]"
        return f"IWAD (DANN recipe, rev. 1){extra}"
    if "+pretrain=" in row["variant"]:
        return "IWAD (paper: stage 1 on M -> U, 0.25)"
    return "IWAD (clean)" if row["variant"] == "default" else f"IWAD [{row['variant']}]"


tables = {}
for task in ["mnist2usps", "usps2mnist"]:
    files = [f for f in sorted(RESULTS.glob(f"*_{task}*.jsonl"))
             if not f.stem.endswith(("_v1", "_v2"))]
    rows = load_results(*files) if files else pd.DataFrame()
    paper = pd.DataFrame(IWAD_TABLE_1[task], index=IWAD_RATES).T
    if rows.empty:
        print(f"{task}: no transfer runs are committed yet; the paper's Table 1:")
        display(paper)
        continue
    rows = rows[~rows["quick"].astype(bool)].copy()
    rows["name"] = rows.apply(row_name, axis=1)
    ours = rows.groupby(["name", "anomaly_rate"])["auroc"].agg(["mean", "std", "count"])
    tables[task] = ours
    cells = ((100 * ours["mean"]).round(1).astype(str) + " ± "
             + (100 * ours["std"]).round(1).fillna(0).astype(str)
             + " (n=" + ours["count"].astype(str) + ")")
    table = cells.unstack("anomaly_rate")
    table.columns = [f"{c} ours" for c in table.columns]
    both = table.join(paper.rename(columns=lambda c: f"{c} paper"), how="outer")
    print(f"{task}: AUROC (%) per anomaly rate, ours (mean over seeds) beside the paper")
    display(plots.table(both[sorted(both.columns, key=lambda c: (float(c.split()[0]), c))]))

# %% [markdown]
# The same, drawn: IWAD under both protocols against MemAE fine-tuned and the paper's IWAD.

# %%
if tables:
    fig, axes = plt.subplots(1, len(tables), figsize=(6.5 * len(tables), 3.8), squeeze=False)
    for ax, (task, ours) in zip(axes[0], tables.items()):
        for name in ours.index.get_level_values("name").unique():
            if not (name.startswith("IWAD (") or name == "memae (finetune)"):
                continue
            cell = ours.loc[name]
            ax.errorbar(cell.index, 100 * cell["mean"], yerr=100 * cell["std"].fillna(0),
                        marker="o", capsize=3, label=name)
        ax.plot(IWAD_RATES, IWAD_TABLE_1[task]["iwad"], "k--", marker="s", label="IWAD (paper)")
        ax.set(title=f"{task}: Table 1", xlabel="target anomaly rate", ylabel="AUROC (%)")
        ax.legend(fontsize="x-small")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Step 10: video (Table 2, UCSD Ped1 -> Ped2)
#
# The paper also transfers between the two UCSD pedestrian scenes with a 3-D convolutional
# autoencoder on 16-frame cuboids (`adlib.methods.memae.conv3d_encoder`; IWAD and MemAE switch
# to it for cuboid input). The source is Ped1's normal training clips; the target's unlabelled
# data are Ped2's test clips; each test frame is scored by the cuboids that hold it. Frames are
# 64 x 64 here (the paper: 256 x 256). As in the authors' video code the backbone is MemAE's
# (2000 memory slots, shrinkage 0.0025). Their target is Ped2's training clips 1-4 **and test
# clips 1-2**, and they evaluate on Ped2's test clips: the target data overlap the test
# (transductive); ours adapts on all of Ped2's test clips, unlabelled, as the unsupervised
# methods of their Table 2 do. Their stage settings (lr 5e-3, lambda 1e-4, 50 epochs a stage)
# are given with `--set lr=5e-3 target_weight=1e-4 num_epochs=100 pretrain_epochs=50`.
# **Ped1 is not in the offline data**: the cell runs when a copy is present and says so
# otherwise.
#
# ```
# python -m adlib bench iwad --transfer ucsd_ped1 ucsd_ped2 --seeds 0
# python -m adlib bench memae --transfer ucsd_ped1 ucsd_ped2 --mode finetune --seeds 0
# ```

# %%
from adlib.video import frame_metrics, score_cuboid_clips, ucsd_transfer

try:
    video = ucsd_transfer("ucsd_ped1", "ucsd_ped2", SEED, root=DATA_ROOT,
                          max_source=64 if QUICK else None, max_target=64 if QUICK else None)
    video_model = IWAD(num_epochs=epochs, pretrain_epochs=pretrain, seed=SEED,
                       batch_size=4, verbose=not QUICK).fit(video.X_source, video.X_target)
    result = frame_metrics(score_cuboid_clips(video_model, video), video.test.labels)
    print(f"Ped1 -> Ped2: frame AUROC {100 * result['auroc']:.1f}% (paper: 91.9)")
except DataError as err:
    print(f"NOTE: UCSD Ped1 (or Ped2) is not available here, so Table 2 is not run.\n  {err}")

# %% [markdown]
# ## What differs from the paper
#
# **What we measured** (Table 1 above; 3 seeds, CPU, committed rows; AUROC %, rates 0.05 ..
# 0.45). Paper protocol: U -> M 95.3 / 95.2 / 94.8 / 94.0 / 93.5 against the paper's 96.0 /
# 93.0 / 92.7 / 91.3 / 89.0, within 3 points up to 0.35 and 4.5 above at 0.45; M -> U 73.2 ..
# 71.5 against 84.0 .. 82.0. Clean protocol: U -> M 78.8 / 77.5 / 79.2 / 78.3 / 74.6, M -> U
# 79.7 / 81.2 / 72.3 / 67.6 / 65.1. MemAE fine-tuned: U -> M 91.1 .. 74.2, M -> U 80.3 .. 66.8.
# So the paper's U -> M row is reached only from a network pretrained on MNIST's 0s; under the
# clean protocol IWAD is level with MemAE fine-tuned at the higher rates and below it at the
# lower ones, and on M -> U it stays below the paper under both protocols. Stage 2 no longer
# collapses (Step 4), but at the authors' learning rates it moves the network little.
#
# * **The protocol (paper).** The authors' digit runs all load the M -> U rate-0.25 stage 1
#   (`--load_pretrain` cannot be switched off: `type=bool`); we reproduce that with
#   `--pretrain-task mnist usps 0.25`, one stage 1 per seed shared by the five rates. For
#   U -> M that stage 1 saw MNIST's normal class as clean source data: the paper's U -> M row
#   is not a transfer result in the sense of its text.
# * **The loss file is unpublished** (`models/loss.py`). What we chose where it matters: the
#   per-image loss is the MSE over pixels on [-1, 1], 4 times the MSE on [0, 1] that their
#   `mean=0.5, std=0.5` suggests; so the adversarial weight is 2e-3 for their 5e-4; their
#   weighted reconstruction is the batch mean of `w L`; the cut-off `m` is relative (the 99th
#   percentile of the source losses after stage 1) where theirs is the absolute 1.9e-3, with
#   their slope and rise kept relative to it.
# * **Budget.** 15 + 5 epochs of max(source, target) batches (theirs: 100 + 100), each stage's
#   learning-rate decay rescaled so that it still falls from 0.01 to 5.9e-5 over stage 1 and on
#   to 3.7e-7 over stage 2. On the development task (digit 2 as the normal class, U -> M, rate
#   0.25, seed 0) doubling the budget to 30 + 10 moved the AUROC on the target training images
#   from 63.1 to 63.6.
# * **No memory module for digits** (their digit code uses the plain autoencoder); the video
#   path takes MemAE's 2000 slots as theirs does.
# * **Batches** are not dropped at the end of a pass (theirs: `drop_last`), and the source and
#   target cycle independently.
# * **Every method** sees the same 3-channel 28 x 28 input in [-1, 1].
#
# ## Exercises
#
# 1. Set `importance=False` (every weight 1). Does stage 2 then change the test AUROC more?
# 2. Move the weight's cut-off (`cutoff_quantile` 0.5 and 0.999). What happens to the weights
#    of target normals and anomalies, and to the test AUROC?
# 3. Run the paper's protocol for M -> U (`SOURCE, TARGET = "mnist", "usps"`). Why does it
#    change less there than for U -> M?

# %% [markdown] tags=["solution"]
# ### Solution to exercise 2

# %% tags=["solution"]
if HAVE_DATA:
    def with_cutoff(q):
        """The notebook's clean IWAD for its own quantile, else the same run with ``q``."""
        if q == iwad.cutoff_quantile:
            return iwad
        return IWAD(num_epochs=epochs, pretrain_epochs=pretrain, cutoff_quantile=q, seed=SEED,
                    verbose=False).fit(split.X_source, split.X_target, monitor=monitor)

    by_quantile = {q: with_cutoff(q) for q in (0.5, iwad.cutoff_quantile, 0.999)}
    rows = []
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for q, model in by_quantile.items():
        x = [r["epoch"] + 1 for r in model.monitor_history_]
        for group, style in [("target normals", "o-"), ("target anomalies", "x--")]:
            ax.plot(x, [r[group]["weight"].mean() for r in model.monitor_history_], style,
                    label=f"cutoff_quantile {q}, {group}")
        last = model.monitor_history_[-1]
        rows.append({"cutoff_quantile": q, "cut-off m": model.cutoff_,
                     "target normals, mean w": last["target normals"]["weight"].mean(),
                     "target anomalies, mean w": last["target anomalies"]["weight"].mean(),
                     "test AUROC": metrics.auroc(split.y_test, model.score(split.X_test))})
    ax.axvline(pretrain + 0.5, color="k", ls=":", lw=1)
    ax.set(title="mean importance weight by cut-off quantile", xlabel="epoch",
           ylabel="mean w(x)", ylim=(-0.05, 1.05))
    ax.legend(fontsize="x-small")
    plt.show()
    moved = pd.DataFrame(rows).set_index("cutoff_quantile")
    display(moved.round(4))
    kept = moved["target normals, mean w"]
    print("Conclusion: the cut-off is a near-hard step at m. A lower quantile drops more "
          "images from stage 2, a higher one keeps more, normals and anomalies alike: target "
          f"normals end with a mean weight of {kept.iloc[0]:.2f} (0.5), {kept.iloc[1]:.2f} "
          f"({iwad.cutoff_quantile}) and {kept.iloc[2]:.2f} (0.999). "
          + ("The weights keep normals over anomalies only where the target's normals are "
             "reconstructed about as well as the source's; "
             if (moved["target normals, mean w"] > moved["target anomalies, mean w"]).any()
             else "No quantile keeps the normals over the anomalies here: the target's "
                  "normals are reconstructed worse than the source's, so the step falls below "
                  "them all; ")
          + "with stage 2's small learning rate the test AUROC moves little either way."
          + (" (Quick mode: a few epochs on small subsets.)" if QUICK else ""))
