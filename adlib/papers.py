"""Numbers published by the papers, to print beside ours (per class, in % AUROC unless noted).

Each entry names its table. Class order is the dataset's label order (MNIST digits 0-9;
Fashion-MNIST and CIFAR-10 in torchvision's order).
"""
from __future__ import annotations

import pandas as pd

__all__ = ["THESIS_TABLE_4_1", "THESIS_TABLE_4_1_MEANS", "THESIS_TABLE_4_2", "THESIS_TABLE_4_4",
           "THESIS_TABLE_3_1", "THESIS_TABLE_3_1_MEANS", "THESIS_TABLE_3_2", "THESIS_TABLE_3_3",
           "G2D_TABLE_1", "G2D_TABLE_2", "IWAD_TABLE_1", "IWAD_RATES", "paper_table",
           "beside_paper", "video_table"]

#: Thesis (Khazaie 2022) Table 4.1: one-class AUROC (%) on MNIST, Fashion-MNIST and CIFAR-10.
THESIS_TABLE_4_1 = {
    "mnist": {
        "AnoGAN": [96.6, 99.2, 85.0, 88.7, 89.4, 88.3, 94.7, 93.5, 84.9, 92.4],
        "DSVDD": [98.0, 99.7, 91.7, 91.9, 94.9, 88.5, 98.3, 94.6, 93.9, 96.5],
        "OCSVM": [99.5, 99.9, 92.6, 93.6, 96.7, 95.5, 98.7, 96.6, 90.3, 96.2],
        "CapsNet_PP": [99.8, 99.0, 98.4, 97.6, 93.5, 97.0, 94.2, 98.7, 99.3, 99.0],
        "OCGAN": [99.8, 99.9, 94.2, 96.3, 97.5, 98.0, 99.1, 98.1, 93.9, 98.1],
        "LSA": [99.3, 99.9, 95.9, 96.6, 95.6, 96.4, 99.4, 98.0, 95.3, 98.1],
        "ADACL (thesis)": [99.37, 99.30, 98.58, 97.36, 97.57, 98.43, 99.56, 98.09, 93.46, 98.38],
    },
    "fashion_mnist": {
        "DAGMM": [30.3, 31.1, 47.5, 48.1, 49.9, 41.3, 42.0, 37.4, 51.8, 37.8],
        "DSEBM": [89.1, 56.0, 86.1, 90.3, 88.4, 85.9, 78.2, 98.1, 86.5, 96.7],
        "LSA": [91.6, 98.3, 87.8, 92.3, 89.7, 90.7, 84.1, 97.7, 91.0, 98.4],
        "DSVDD": [98.2, 90.3, 90.7, 94.2, 89.4, 91.8, 83.4, 98.8, 91.9, 99.0],
        "OCSVM": [91.9, 99.0, 89.4, 94.2, 90.7, 91.8, 83.4, 98.8, 90.3, 98.2],
        "ADACL (thesis)": [94.42, 99.46, 89.82, 91.05, 92.68, 90.40, 80.43, 97.88, 97.14, 98.88],
    },
    "cifar10": {
        "OCSVM": [63.0, 44.0, 64.9, 48.7, 73.5, 50.0, 72.5, 53.3, 64.9, 50.8],
        "CapsNet_PP": [62.2, 45.5, 67.1, 67.5, 68.3, 63.5, 72.7, 67.3, 71.0, 46.6],
        "AnoGAN": [67.1, 54.7, 52.9, 54.5, 65.1, 60.3, 58.5, 62.5, 75.8, 66.5],
        "DSVDD": [61.7, 65.9, 50.8, 59.1, 60.9, 65.7, 67.7, 67.3, 75.9, 73.1],
        "LSA": [73.5, 58.0, 69.0, 54.2, 76.1, 54.6, 75.1, 53.5, 71.7, 54.8],
        "OCGAN": [75.7, 53.1, 64.0, 62.0, 72.3, 62.0, 72.3, 57.5, 82.0, 55.4],
        "CAVGA-D_u": [65.3, 78.4, 76.1, 74.7, 77.5, 55.2, 81.3, 74.5, 80.1, 74.1],
        "DROCC": [81.66, 76.74, 66.66, 67.13, 73.62, 74.43, 74.43, 71.39, 80.02, 76.21],
        "ADACL (thesis)": [73.89, 83.87, 67.47, 70.66, 69.51, 77.91, 72.66, 83.04, 87.64, 81.35],
    },
}

#: Published means of Table 4.1 (the thesis' own rounding; a few differ from the mean of the row).
THESIS_TABLE_4_1_MEANS = {"mnist": 98.01, "fashion_mnist": 93.22, "cifar10": 76.80}

#: Thesis Table 4.2: frame-level AUROC and EER (%) on UCSD Ped2 (None: not reported).
THESIS_TABLE_4_2 = {
    "TSC": (92.2, None), "FRCN action": (92.2, None), "AbnormalGAN": (93.5, 13),
    "MemAE": (94.1, None), "GrowingGas": (94.1, None), "FFP": (95.4, None),
    "ConvAE+UNet": (96.2, None), "STAN": (96.5, None), "Object-centric": (97.8, None),
    "Ravanbakhsh": (None, 14), "ALOCC": (None, 13), "Deep-cascade": (None, 9),
    "Old is gold": (98.1, 7), "ADACL (thesis)": (98.4, 5),
}

#: Thesis Table 4.4: MNIST mean AUROC (%) and its variance for three label-interval pairs.
THESIS_TABLE_4_4 = {
    "[0, 0.1] - [0.9, 1]": (97.14, 1.50e-5),
    "[0, 0.2] - [0.8, 1]": (96.93, 8.83e-5),
    "[0, 0.3] - [0.7, 1]": (97.42, 1.29e-5),
}


def paper_table(dataset: str, table: dict = THESIS_TABLE_4_1) -> pd.DataFrame:
    """A per-class table (rows = methods, columns = classes 0-9 and Mean) of published numbers."""
    df = pd.DataFrame(table[dataset], index=range(10)).T
    df["Mean"] = df.mean(axis=1).round(2)
    if table is THESIS_TABLE_4_1 and "ADACL (thesis)" in df.index:
        df.loc["ADACL (thesis)", "Mean"] = THESIS_TABLE_4_1_MEANS[dataset]
    return df


def beside_paper(ours: pd.DataFrame, dataset: str, rows=None,
                 table: dict = THESIS_TABLE_4_1) -> pd.DataFrame:
    """Stack our per-class table (:func:`adlib.results.per_class_table`) under the paper's rows.

    Our rows are renamed ``"<method> (ours)"``; ``rows`` picks the paper's rows to keep.
    """
    paper = paper_table(dataset, table)
    if rows is not None:
        paper = paper.loc[list(rows)]
    if ours is None or ours.empty:
        return paper
    ours = ours[[c for c in paper.columns if c in ours.columns]].copy()
    ours.index = [f"{name} (ours)" for name in ours.index]
    return pd.concat([paper, ours])

# --------------------------------------------------------------------------- thesis chapter 3 (ALPS)

#: Thesis (Khazaie 2022) Table 3.1: one-class AUROC (%) on MNIST and Fashion-MNIST (no CIFAR-10
#: in this table). The other methods' rows repeat those of Table 4.1; the published means of
#: those rows are given to one decimal (:data:`THESIS_TABLE_3_1_MEANS`).
THESIS_TABLE_3_1 = {
    "mnist": {
        **{name: THESIS_TABLE_4_1["mnist"][name]
           for name in ["AnoGAN", "DSVDD", "OCSVM", "CapsNet_PP", "OCGAN", "LSA"]},
        "ALPS (thesis)": [99.68, 99.92, 94.09, 96.19, 98.31, 97.25, 99.64, 97.25, 95.56, 98.65],
    },
    "fashion_mnist": {
        **{name: THESIS_TABLE_4_1["fashion_mnist"][name]
           for name in ["DAGMM", "DSEBM", "LSA", "DSVDD", "OCSVM"]},
        "ALPS (thesis)": [94.42, 98.46, 89.82, 90.65, 91.68, 90.40, 80.43, 97.88, 97.87, 97.88],
    },
}

#: Published means of Table 3.1. The Fashion-MNIST ALPS row averages to 92.949, printed 92.94.
THESIS_TABLE_3_1_MEANS = {
    "mnist": {"AnoGAN": 91.3, "DSVDD": 94.8, "OCSVM": 96.0, "CapsNet_PP": 97.7, "OCGAN": 97.5,
              "LSA": 97.5, "ALPS (thesis)": 97.65},
    "fashion_mnist": {"DAGMM": 41.7, "DSEBM": 85.5, "LSA": 92.2, "DSVDD": 92.8, "OCSVM": 92.8,
                      "ALPS (thesis)": 92.94},
}

#: Thesis Table 3.2: frame-level AUROC and EER (%) on UCSD Ped2 (None: not reported).
THESIS_TABLE_3_2 = {
    "TSC": (92.2, None), "FRCN action": (92.2, None), "AbnormalGAN": (93.5, 13),
    "MemAE": (94.1, None), "GrowingGas": (94.1, None), "FFP": (95.4, None),
    "ConvAE+UNet": (96.2, None), "STAN": (96.5, None), "Object-centric": (97.8, None),
    "Ravanbakhsh": (None, 14), "ALOCC": (None, 13), "Deep-cascade": (None, 9),
    "Old is gold": (98.1, 7), "ALPS (thesis)": (98.16, 6),
}

#: Thesis Table 3.3: mean one-class AUROC (%) over the ten MNIST classes of three autoencoders.
THESIS_TABLE_3_3 = {
    "Vanilla AE": 95.42,
    "AE with added random noise": 95.95,
    "AE with ALPS": 97.65,
}

__all__ += ["THESIS_TABLE_3_1", "THESIS_TABLE_3_1_MEANS", "THESIS_TABLE_3_2", "THESIS_TABLE_3_3"]


#: G2D (Pourreza et al.) Table 1: frame-level EER (%) on UCSD Ped2.
G2D_TABLE_1 = {
    "MPCCA": 30, "Sabokrou et al.": 16, "MDT": 24, "Li et al.": 18.5, "Dan Xu et al.": 20,
    "AVID": 14, "ALOCC": 13, "RE": 15, "Ravanbakhsh et al. [26]": 13,
    "Ravanbakhsh et al. [25]": 14, "Deep-Anomaly": 13, "Deep-cascade": 9, "NRE": 14,
    "G2D (paper)": 11,
}

#: IWAD (Fan et al.) Table 1: AUROC (%) of the digit-0 transfer tasks per target anomaly rate.
#: Keys: task (``"mnist2usps"``: MNIST -> USPS), then the method as our runs name it.
IWAD_TABLE_1 = {
    "mnist2usps": {
        "isolation_forest (target)": [94.0, 97.0, 81.7, 77.7, 73.0],
        "memae (source)": [32.0, 34.0, 32.0, 32.3, 34.3],
        "memae (finetune)": [80.7, 68.7, 67.3, 65.3, 61.3],
        "iwad": [84.0, 83.3, 82.0, 81.7, 82.0],
        "memae (target_normals)": [86.7, 88.0, 88.0, 86.7, 88.3],
    },
    "usps2mnist": {
        "isolation_forest (target)": [95.7, 91.7, 86.7, 82.7, 78.3],
        "memae (source)": [59.7, 59.5, 59.7, 60.0, 57.7],
        "memae (finetune)": [97.0, 88.0, 84.7, 79.3, 75.3],
        "iwad": [96.0, 93.0, 92.7, 91.3, 89.0],
        "memae (target_normals)": [100.0, 99.7, 99.7, 99.7, 99.3],
    },
}
#: The anomaly rates of IWAD Table 1's columns.
IWAD_RATES = (0.05, 0.15, 0.25, 0.35, 0.45)

#: ADNL Table 1: mean AUROC (%) over the ten MNIST digits, each digit in turn the anomaly;
#: keys are our variants (unsupervised AAE: no labelled anomaly; negative learning: every
#: training image of the anomaly digit labelled, the paper's protocol).
ADNL_TABLE_1_MEANS = {"default+n_labelled=0": 49.69, "default": 99.11}
__all__ += ["ADNL_TABLE_1_MEANS"]

#: G2D Table 2: Caltech-256, inliers from n random categories, 50% outliers from 257.clutter.
G2D_TABLE_2 = {1: {"AUC": 0.957, "F1": 0.945}, 3: {"AUC": 0.951, "F1": 0.922},
               5: {"AUC": 0.939, "F1": 0.913}}


def video_table(ours: pd.DataFrame | None = None) -> pd.DataFrame:
    """Frame-level AUROC and EER (%) on UCSD Ped2: thesis Tables 3.2 and 4.2, G2D Table 1, and
    ``ours`` (rows indexed by method with columns ``AUROC (%)`` and ``EER (%)``) beneath; a
    number a paper does not report is NaN (shown as "-" by :func:`adlib.plots.table`)."""
    rows = {**THESIS_TABLE_3_2, **THESIS_TABLE_4_2}
    table = pd.DataFrame([{"method": k, "AUROC (%)": a, "EER (%)": e, "source": "thesis 3.2/4.2"}
                          for k, (a, e) in rows.items()])
    g2d = pd.DataFrame([{"method": k, "AUROC (%)": float("nan"), "EER (%)": e,
                         "source": "G2D Table 1"} for k, e in G2D_TABLE_1.items() if k not in rows])
    parts = [table, g2d]
    if ours is not None and len(ours):
        parts.append(ours.rename_axis("method").reset_index().assign(source="ours (measured)"))
    return pd.concat(parts, ignore_index=True).set_index("method")
