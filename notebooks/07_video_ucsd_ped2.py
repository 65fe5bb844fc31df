# %% [markdown]
# # Video anomaly detection on UCSD Ped2
#
# *Data: UCSD Anomaly Detection Dataset (Mahadevan, Li, Bhalodia, Vasconcelos, CVPR 2010).
# Protocol: thesis sections 3.4.2 and 4.4.2 (after "Old is Gold", Zaheer et al. 2020) and G2D
# section 4.3.*
#
# A fixed camera looks down on a walkway. In the sixteen **training** clips only pedestrians
# move. In the twelve **test** clips, bicycles, skateboards, a cart and a car cross the scene:
# these are the anomalies. The official release marks each abnormal test frame (frame-level
# labels) and, for Ped2, the abnormal pixels (masks).
#
# Three chapters of the book evaluate here with the same **patch protocol**:
#
# 1. every frame is cut into 30 x 30 patches;
# 2. a detector is trained on the patches of the training clips that contain a pedestrian;
# 3. every patch of every test frame is scored; a frame's score is its **highest** score over
#    the patches that hold a moving object (pedestrians "or other objects", thesis 4.4.2);
# 4. frame-level AUROC and equal error rate (EER) against the official labels.
#
# The code lives in `adlib/video.py`: the loaders, the patch protocol, the frame metrics and
# the localization maps. Any registered detector runs on it, for example
# `python -m adlib bench adacl --dataset ucsd_ped2 --set clip_scores=False`.

# %% tags=["parameters"]
QUICK = False            # quick mode: a small training subset, 2 epochs, 2 test clips (CI)
DATA_ROOT = None         # None: use $ADLIB_DATA
DATASET = "ucsd_ped2"
PATCH_SIZE = 30          # patch side in pixels (thesis, G2D)
STRIDE = 30              # 30: no overlap (thesis); G2D uses an overlap of 5, i.e. 25
MOTION_THRESHOLD = 25    # grey levels a pixel must differ from its clip's median frame
MIN_MOTION = 0.05        # share of moving pixels that makes a training patch "with a pedestrian"
METHOD = "adacl"         # the detector trained in this notebook
EPOCHS = 10              # its epoch budget in full mode (ADACL's default)
SEED = 0
MAX_TRAIN_QUICK = 2000   # training patches kept in quick mode
QUICK_CLIPS = ["Test001", "Test004"]  # test clips scored in quick mode

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from adlib import plots
from adlib.bench import REPO
from adlib.data import DataError
from adlib.detectors import BaseDeepDetector
from adlib.papers import video_table
from adlib.registry import detector_class, get_detector
from adlib.results import load_results
from adlib.video import (frame_metrics, frame_scores, load_ucsd, localization_map,
                         motion_in_test_clips, motion_mask, moving_patches, patch_positions,
                         score_clips, ucsd_patches)

if QUICK:  # small networks: on a busy CPU a second thread slows quick fits down
    torch.set_num_threads(1)
RESULTS = REPO / "results"
print(f"quick={QUICK}, method={METHOD}, patch {PATCH_SIZE} px at stride {STRIDE}")

# %% [markdown]
# ## Step 1: the dataset and its anomalies
#
# The loader reads the official layout (`Train/Train001/001.tif`, `Test/Test001_gt/001.bmp`,
# `Test/UCSDped2.m`) and the book's offline copy, which keeps that layout with JPEG frames and
# PNG masks. Decoded frames stay `uint8` and are cached in the project's cache folder.

# %%
try:
    train = load_ucsd(DATASET, "train", root=DATA_ROOT)
    test = load_ucsd(DATASET, "test", root=DATA_ROOT)
    HAVE_DATA = True
except DataError as err:
    HAVE_DATA = False
    print(f"NOTE: {DATASET} is not available here, so the cells below only say so.\n  {err}")

if HAVE_DATA:
    clips = pd.DataFrame({
        "clip": test.names, "frames": [len(f) for f in test.frames],
        "abnormal frames": [int(lbl.sum()) for lbl in test.labels],
        "first abnormal": [int(np.argmax(lbl)) + 1 if lbl.any() else None for lbl in test.labels]})
    print(f"train: {len(train)} clips, {train.num_frames} frames of "
          f"{train.frames[0].shape[1]} x {train.frames[0].shape[2]} pixels")
    print(f"test: {len(test)} clips, {test.num_frames} frames, "
          f"{int(clips['abnormal frames'].sum())} abnormal")
    display(clips.set_index("clip").T)

# %% [markdown]
# Four abnormal test frames with the official pixel masks outlined in red. A frame is abnormal
# exactly when its mask has a lit pixel (checked on all 2010 test frames when the offline copy
# was made).

# %%
if HAVE_DATA:
    examples = [(0, 100), (3, 120), (5, 60), (11, 150)]  # (clip index, 0-based frame)
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    for ax, (c, t) in zip(axes, examples):
        plots.mask_overlay(test.frames[c][t], test.masks[c][t],
                           f"{test.names[c]}, frame {t + 1}", ax=ax)
    fig.suptitle("UCSD Ped2 test frames with the official anomaly masks (red)")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Step 2: the patch protocol and the pedestrian filter
#
# A 240 x 360 frame holds 8 x 12 = 96 patches of 30 x 30 pixels at stride 30 (150 at G2D's
# stride 25; the last row and column are moved in so the grid covers the frame).
#
# Training uses only the patches that **contain a pedestrian**. The papers do not say how they
# decided that; we define it reproducibly. In a training clip only pedestrians move, so:
#
# * the clip's **median frame over time** is its static background (people walk on);
# * a pixel **moves** when it differs from that background by more than `MOTION_THRESHOLD`
#   grey levels;
# * a patch is kept when at least `MIN_MOTION` of its pixels move.

# %%
if HAVE_DATA:
    frames = train.frames[0]
    positions = patch_positions(*frames.shape[1:], PATCH_SIZE, STRIDE)
    t = 60
    moving = motion_mask(frames, MOTION_THRESHOLD)[t]
    keep = moving_patches(frames, positions, PATCH_SIZE, MOTION_THRESHOLD, MIN_MOTION)[t]
    fig, axes = plt.subplots(1, 3, figsize=(16, 3.6))
    axes[0].imshow(np.median(frames, axis=0), cmap="gray")
    axes[0].set(title=f"{train.names[0]}: median frame (background)", xlabel="x (pixels)",
                ylabel="y (pixels)")
    axes[1].imshow(moving, cmap="gray")
    axes[1].set(title=f"moving pixels of frame {t + 1}", xlabel="x (pixels)",
                ylabel="y (pixels)")
    axes[2].imshow(frames[t], cmap="gray")
    for (r, c), k in zip(positions, keep):
        axes[2].add_patch(plt.Rectangle((c, r), PATCH_SIZE, PATCH_SIZE, fill=False, lw=0.6,
                                        ec="lime" if k else "white", alpha=1 if k else 0.25))
    axes[2].set(title=f"kept patches (green): {int(keep.sum())} of {len(positions)}",
                xlabel="x (pixels)", ylabel="y (pixels)")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# Over all training clips, the filter keeps the patches below. A sample of them shows what the
# detector learns as "normal": pedestrians, and bits of pedestrians.

# %%
if HAVE_DATA:
    split = ucsd_patches(DATASET, SEED, size=PATCH_SIZE, stride=STRIDE,
                         motion_threshold=MOTION_THRESHOLD, min_motion=MIN_MOTION,
                         max_train=MAX_TRAIN_QUICK if QUICK else None,
                         preprocess=detector_class(METHOD).preprocess,
                         train_set=train, test_set=test)
    info = split.info
    print(f"{info['moving_patches']} of {train.num_frames * info['patches_per_frame']} training "
          f"patches hold motion ({100 * info['moving_patches'] / (train.num_frames * info['patches_per_frame']):.1f}%); "
          f"used here: {info['n_train']} for training, {info['n_val']} held out for validation")
    plots.image_grid(split.X_train[:48], "training patches kept by the pedestrian filter",
                     nrow=12)
    plt.show()

# %% [markdown]
# ## Step 3: train a detector on the patches
#
# Any registered one-class detector works. Here we train ADACL (chapter 6 of the book), with
# one change named where it matters: ADACL clips its regression output to [0, 1], and a frame
# takes its *highest* patch score, so nearly every frame would score exactly 1 and all frames
# would tie. We rank by the output before clipping (`clip_scores=False`), which keeps the order
# of everything inside [0, 1].

# %%
if HAVE_DATA:
    params = {"num_epochs": 2 if QUICK else EPOCHS, "seed": SEED, "verbose": not QUICK}
    if METHOD == "adacl":
        params["clip_scores"] = False
    detector = get_detector(METHOD, **params)
    detector.fit(split.X_train, split.X_val)
    print(f"trained {METHOD} for {detector.epochs_run_} epochs in {detector.fit_seconds_:.0f} s")
    if isinstance(detector, BaseDeepDetector):
        plots.training_curves(detector.history_, f"{METHOD} on Ped2 patches: training")
        plt.show()

# %% [markdown]
# ## Step 4: which patches decide a frame
#
# Every patch of every test frame is scored, one clip at a time, so the float patches of the
# whole test set are never in memory at once. Which patches should decide the frame's score?
# The detector never saw static background in training (the filter removed it), so a patch of
# grass is unfamiliar in *every* frame. Below, the patches of one abnormal test frame: the
# highest scores sit on the background, not on the bicycle.

# %%
if HAVE_DATA:
    chosen = [test.names.index(n) for n in QUICK_CLIPS] if QUICK else list(range(len(test)))
    patch_scores = score_clips(detector, split, clips=chosen, verbose=not QUICK)
    keep = motion_in_test_clips(split, clips=chosen)
    i, t = chosen[0], int(np.argmax(test.labels[chosen[0]])) + 40
    s = patch_scores[0][t]
    heat = localization_map((s - s.min()) / max(np.ptp(s), 1e-12), split.positions, split.size,
                            test.frames[i].shape[1:])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    plots.mask_overlay(test.frames[i][t], test.masks[i][t], f"all patches, {test.names[i]} "
                       f"frame {t + 1}", ax=axes[0], heat=heat)
    moving_heat = localization_map(np.where(keep[0][t], (s - s.min()) / max(np.ptp(s), 1e-12), 0),
                                   split.positions, split.size, test.frames[i].shape[1:])
    plots.mask_overlay(test.frames[i][t], test.masks[i][t], "moving patches only", ax=axes[1],
                       heat=moving_heat)
    fig.suptitle(f"{METHOD} patch scores (bright = anomalous); official mask in red")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# So a frame's score is its highest score over the patches that **hold a moving object**, by the
# training filter's rule with the test clip's own median frame as background (no labels are
# used). The thesis evaluates "on patches that contain pedestrians or other objects"; the
# maximum over *all* patches is reported beside it in the results files (`all_patches`).
#
# ## Step 5: frame scores over time
#
# Abnormal frames (official labels) are shaded red. A good detector rises when the bicycle or
# the car enters and stays up while it is in view.

# %%
if HAVE_DATA:
    scores = frame_scores(patch_scores, keep)
    labels = [test.labels[i] for i in chosen]
    ours = frame_metrics(scores, labels)
    every = frame_metrics(frame_scores(patch_scores), labels)
    print(f"{METHOD}, this notebook ({len(chosen)} clips): frame AUROC "
          f"{100 * ours['auroc']:.2f}%, EER {100 * ours['eer']:.1f}% over moving patches; "
          f"over all patches {100 * every['auroc']:.2f}%, EER {100 * every['eer']:.1f}%")
    ncols = min(4, len(chosen))
    nrows = int(np.ceil(len(chosen) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 2.8 * nrows), squeeze=False)
    for ax, i, s in zip(axes.flat, chosen, scores):
        plots.scores_over_time({METHOD: s}, test.labels[i], test.names[i], ax=ax)
    for ax in axes.flat[len(chosen):]:
        ax.axis("off")
    fig.suptitle(f"{METHOD}: frame score over time (abnormal frames shaded)")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# The committed full runs (`results/<method>_ucsd_ped2.jsonl`) keep every test frame's score,
# so the same figure for ADACL and ALPS side by side comes from the results files, not from
# training here.

# %%
files = sorted(RESULTS.glob("*_ucsd_ped2.jsonl"))
full = load_results(*files) if files else pd.DataFrame()
if len(full):
    full = full[~full["quick"]]
if HAVE_DATA and len(full):
    first = full.groupby("method").first()
    fig, axes = plt.subplots(3, 4, figsize=(16, 8.4))
    for ax, (i, name) in zip(axes.flat, enumerate(test.names)):
        series = {m: np.asarray(row["frame_scores"][name]) for m, row in first.iterrows()}
        series = {m: (s - s.min()) / max(s.max() - s.min(), 1e-12) for m, s in series.items()}
        plots.scores_over_time(series, test.labels[i], name, ax=ax,
                               ylabel="frame score (scaled per clip)")
    fig.suptitle("committed full runs: frame scores over time, each scaled to [0, 1] per clip "
                 "for display")
    plt.tight_layout()
    plt.show()
elif not len(full):
    print("no committed full runs on UCSD Ped2 in results/ yet")

# %% [markdown]
# ## Step 6: localization
#
# Each pixel gets the highest score of the moving patches that cover it. Next to the official
# mask (red outline), a good map lights the anomaly, not the pedestrians.

# %%
if HAVE_DATA:
    picks = []
    for i, s, k in zip(chosen, patch_scores, keep):
        moving_scores = np.where(k, s, s.min())
        t = int(np.argmax(np.where(test.labels[i], moving_scores.max(axis=1), -np.inf)))
        picks.append((i, t, moving_scores[t]))  # the clip's top-scoring abnormal frame
    picks = picks[:4]
    lo = min(p[2].min() for p in picks)
    hi = max(p[2].max() for p in picks)
    fig, axes = plt.subplots(1, len(picks), figsize=(4.2 * len(picks), 3.4), squeeze=False)
    for ax, (i, t, s) in zip(axes.flat, picks):
        heat = localization_map((s - lo) / max(hi - lo, 1e-12), split.positions, split.size,
                                test.frames[i].shape[1:])
        plots.mask_overlay(test.frames[i][t], test.masks[i][t], f"{test.names[i]}, frame {t + 1}",
                           ax=ax, heat=heat)
    fig.suptitle(f"{METHOD}: localization map (bright = anomalous) and the official mask (red)")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Step 7: the frame-level table beside the papers
#
# Our committed full runs beside thesis Tables 3.2 and 4.2 and G2D Table 1. We report the
# AUROC and EER of the raw frame scores over moving patches, and over all patches beside. Many video papers first min-max scale each test clip's
# scores; that uses each test clip's own score range, so we print it in a separate column and
# never instead.

# %%
if len(full):
    full = full.assign(auroc_all=[r["auroc"] for r in full["all_patches"]],
                       eer_all=[r["eer"] for r in full["all_patches"]])
    agg = full.groupby("method").agg(
        runs=("seed", "count"), auroc=("auroc", "mean"), eer=("eer", "mean"),
        auroc_clip=("auroc_per_clip_norm", "mean"), eer_clip=("eer_per_clip_norm", "mean"),
        auroc_all=("auroc_all", "mean"), eer_all=("eer_all", "mean"),
        train_s=("fit_s", "mean"), score_s=("score_s", "mean"), peak_mb=("peak_rss_mb", "max"))
    ours_table = pd.DataFrame({
        "AUROC (%)": 100 * agg["auroc"], "EER (%)": 100 * agg["eer"],
        "AUROC, per-clip scaled (%)": 100 * agg["auroc_clip"],
        "EER, per-clip scaled (%)": 100 * agg["eer_clip"],
        "AUROC, all patches (%)": 100 * agg["auroc_all"],
        "EER, all patches (%)": 100 * agg["eer_all"]})
    ours_table.index = [f"{m} (ours, {n} seed{'s' if n > 1 else ''})"
                        for m, n in agg["runs"].items()]
    display(video_table(ours_table).round(2))
    display(agg.round(1))
else:
    display(video_table())
    print("our rows appear once results/<method>_ucsd_ped2.jsonl are committed")

# %% [markdown]
# ## What differs from the papers
#
# * **Pedestrian filter.** The papers keep "patches that include pedestrians" without saying
#   how; ours is the motion rule of step 2 (median background, 25 grey levels, 5% of pixels).
# * **Frames.** The offline copy's frames are JPEG (quality 95), not the official TIFFs; the
#   labels and masks are the official ones, lossless.
# * **Frame scores.** A frame's score is its highest score over moving patches (step 4); the
#   rule over all patches and per-clip scaled scores are reported beside, never instead.
# * **ADACL's scores** are ranked before clipping (step 3).
#
# ## Exercises
#
# 1. Set `STRIDE = 25` (G2D's overlap of 5). How many patches does a frame hold now, and does
#    the frame AUROC change?
# 2. Lower `MIN_MOTION` to 0.01. Which kinds of patches enter the training set, and what happens
#    to the localization maps?
# 3. Replace the frame score "highest moving patch" by the mean of the three highest. Why might
#    that help against a single noisy patch?
# 4. A car that parks for most of a clip becomes part of that clip's median background. Which
#    test clips of Ped2 could suffer from this, judging from their abnormal ranges?

# %% [markdown] tags=["solution"]
# ### Solution to exercise 3

# %% tags=["solution"]
if HAVE_DATA:
    def top_k_frame_scores(patch_scores, keep, k):
        """A frame's score: the mean of its ``k`` highest moving-patch scores (of all of them
        if it has fewer); a frame with none gets the lowest frame score, as in frame_scores."""
        out = []
        for s, m in zip(patch_scores, keep):
            top = np.sort(np.where(m, s, -np.inf), axis=1)[:, -k:]
            n = np.isfinite(top).sum(axis=1)
            total = np.where(np.isfinite(top), top, 0).sum(axis=1)
            out.append(np.where(n > 0, total / np.maximum(n, 1), np.nan))
        floor = np.nanmin(np.concatenate(out))
        return [np.where(np.isnan(o), floor, o) for o in out]

    assert all(np.allclose(a, b) for a, b in zip(top_k_frame_scores(patch_scores, keep, 1),
                                                  scores))  # k = 1 is the notebook's rule
    by_k = pd.DataFrame({k: frame_metrics(top_k_frame_scores(patch_scores, keep, k), labels)
                         for k in (1, 2, 3, 5)}).T[["auroc", "eer"]] * 100
    by_k.index.name = "k highest moving patches averaged"
    display(by_k.round(2))
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot(by_k.index, by_k["auroc"], "o-", label="frame AUROC")
    ax.plot(by_k.index, by_k["eer"], "s--", label="frame EER")
    ax.set(title=f"{METHOD}: frame score = mean of the k highest moving patches",
           xlabel="k", ylabel="frame AUROC and EER (%)", xticks=list(by_k.index))
    ax.legend()
    plt.show()
    gain = by_k.loc[3, "auroc"] - by_k.loc[1, "auroc"]
    print(f"Conclusion: the mean of the three highest moving patches moves the frame AUROC by "
          f"{gain:+.2f} points against the single highest ({len(chosen)} test clips). Why it can "
          "help: one noisy patch (a shadow, a JPEG block, a pedestrian at an unusual spot) sets "
          "the maximum of a normal frame on its own, while a bicycle or a car covers several "
          "patches, so averaging the top three damps the lone outlier and keeps the real "
          "anomaly high. It can also hurt small anomalies that fill a single patch."
          + (" (Quick mode: 2 clips and 2 epochs.)" if QUICK else ""))
