"""The command line, ``python -m adlib COMMAND``; ``python -m adlib --help`` lists every command.

* ``bench``: run a method on a protocol and append one results row per run
  (:func:`adlib.bench.run_grid`, :func:`~adlib.bench.run_transfer`); ``table`` prints a results
  file's per-class table, ``list`` the registered detectors, ``cost`` the leaderboard's cost run;
* ``fit`` and ``score``: fit a detector once on a dataset (a folder of your own images or a
  registered name) and save it; score new images with it, to a CSV with anomaly maps
  (:mod:`adlib.apply`);
* ``book`` (:mod:`adlib.book`) and ``lab`` (:mod:`adlib.labs`) have parsers of their own.

A user's mistake (a bad class, a missing dataset, a clash with stored results) ends in one line
on stderr and exit status 2; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import ast
import sys

from .bench import TRANSFER_MODES, TRANSFER_RATES, run_cost, run_grid, run_transfer
from .data import DATASETS, DataError
from .grid import BACKENDS
from .protocols import SELECTIONS
from .registry import available_detectors, detector_class
from .results import load_results, per_class_table
from .video import VIDEO_DATASETS

__all__ = ["main", "USER_ERRORS"]


def _class_index(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--classes takes 'all' or class indices, got {text!r}") from None


def _parse_set(items) -> dict:
    params = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set and --protocol expect key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return params


#: What the command line reports as one line (a user's mistake), not as a traceback (a bug).
#: (:class:`adlib.results.ConfigMismatchError` is a ``ValueError``.)
USER_ERRORS = (DataError, ValueError, FileNotFoundError, NotADirectoryError)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m adlib", description="The anomaly-detection book's command line: "
        "benchmarks, results tables, fitting and scoring your own images, the book and the "
        "course labs.")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (default: one line)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    b = sub.add_parser("bench", help="run a method on a protocol and append results",
                       description="Run a registered method on a protocol; append one row per "
                       "finished (class, seed) run to results/<method>_<dataset>.jsonl.")
    b.add_argument("method", help=f"a registered detector: {', '.join(available_detectors())}")
    b.add_argument("--dataset", default="mnist",
                   help=f"image datasets: {', '.join(DATASETS)}, or a folder of your own "
                        f"images; video datasets: {', '.join(VIDEO_DATASETS)} (default mnist)")
    b.add_argument("--classes", nargs="+", default=["all"], help="'all' or class indices")
    b.add_argument("--seeds", nargs="+", type=int, default=[0])
    b.add_argument("--quick", action="store_true", help="quick mode: capped epochs")
    b.add_argument("--epochs", type=int, help="override the method's epoch budget")
    b.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="detector parameters")
    b.add_argument("--variant", default="default", help="name of this configuration")
    b.add_argument("--outlier-ratios", nargs="+", type=float, default=[],
                   help="also evaluate on test subsets with these anomaly shares (G2D: 0.1 .. 0.5)")
    b.add_argument("--selection", choices=SELECTIONS, default="clean",
                   help="how the epoch is chosen: 'clean' (no real anomaly before the test, "
                        "default) or 'paper' (real anomalies from other classes' training "
                        "images, as the thesis chooses ALPS' epoch and score)")
    b.add_argument("--dev", action="store_true",
                   help="evaluate on a development split of training images, not on the test "
                        "split (to choose hyperparameters without test labels)")
    b.add_argument("--protocol", nargs="*", metavar="KEY=VALUE",
                   help="video protocol options, e.g. stride=25 (see adlib.video.ucsd_patches)")
    b.add_argument("--transfer", nargs=2, metavar=("SOURCE", "TARGET"),
                   help="IWAD's transfer protocol from SOURCE to TARGET (e.g. mnist usps); "
                        "--classes then names the normal class (default 0)")
    b.add_argument("--rates", nargs="+", type=float, default=list(TRANSFER_RATES),
                   help="target anomaly rates of --transfer (default IWAD's five)")
    b.add_argument("--pretrain-task", nargs=3, metavar=("SOURCE", "TARGET", "RATE"),
                   help="with --transfer and IWAD: run stage 1 once on this task and start "
                        "every rate's stage 2 from it (the authors' protocol: mnist usps 0.25)")
    b.add_argument("--mode", choices=TRANSFER_MODES,
                   help="with --transfer, how a detector that is not a transfer method trains")
    b.add_argument("--out", help="results file (default results/<method>_<dataset>.jsonl)")
    b.add_argument("--size", type=int, help="resize every image to SIZE x SIZE (a folder of "
                                           "images of several sizes)")
    b.add_argument("--max-train", type=int, help="cap the training normals")
    b.add_argument("--max-test", type=int, help="cap the test images (stratified)")
    b.add_argument("--replace", action="store_true",
                   help="run every run of the grid again and replace its stored row (after "
                        "a change of configuration or of the code)")
    b.add_argument("--data-root", help="data folder (default $ADLIB_DATA)")
    b.add_argument("--no-verify", action="store_true",
                   help="skip the checks of the data copy (the published copies' tree digest, "
                        "the official image counts of any other copy)")
    b.add_argument("--download", action="store_true",
                   help="fetch a missing dataset from its official source (needs internet)")
    b.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the Python traceback of an error")
    b.add_argument("--quiet", action="store_true")
    b.add_argument("--backend", choices=BACKENDS, default="local",
                   help="where the runs execute: here one after the other, or as Ray tasks")
    b.add_argument("--ray-address", help="with --backend ray: 'auto' or 'ray://host:port' for "
                                         "a running cluster (default: start Ray on this machine)")
    b.add_argument("--ray-cpus", type=float, default=1,
                   help="with --backend ray: CPUs reserved for each run (default 1)")
    b.add_argument("--ray-gpus", type=float, default=0,
                   help="with --backend ray: GPUs reserved for each run (default 0)")
    t = sub.add_parser("table", help="per-class table of results files")
    t.add_argument("paths", nargs="+")
    t.add_argument("--metric", default="auroc")
    t.add_argument("--by", default="method")
    sub.add_parser("list", help="registered detectors and what they declare")
    _fit_and_score_parsers(sub)
    c = sub.add_parser("cost", help="the leaderboard's cost run: each entry trained once on "
                                    "one class here (run it alone on the machine)")
    c.add_argument("--dataset", default="mnist")
    c.add_argument("--class", dest="normal_class", type=int, default=0)
    c.add_argument("--methods", nargs="+", help="entries to measure (default: all)")
    c.add_argument("--quick", action="store_true")
    # book and lab have parsers of their own (adlib.book, adlib.labs); listed here for --help
    sub.add_parser("book", help="execute the notebooks and build the HTML book "
                                "(python -m adlib book --help)", add_help=False)
    sub.add_parser("lab", help="write the course labs' student notebooks "
                               "(python -m adlib lab --help)", add_help=False)
    return parser


def main(argv=None) -> int:
    """Entry point of ``python -m adlib``: a user's mistake (:data:`USER_ERRORS`) prints one
    line on stderr and returns 2; ``--debug`` re-raises it with its traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        return _main(argv)
    except USER_ERRORS as err:
        if debug:
            raise
        prog = " ".join(["python -m adlib", *argv[:1]])
        print(f"{prog}: error: {err} (--debug shows the traceback)", file=sys.stderr)
        return 2


def _main(argv: list) -> int:
    if argv and argv[0] == "book":
        from .book import main as book_main
        return book_main(argv[1:])
    if argv and argv[0] == "lab":
        from .labs import main as lab_main
        return lab_main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)

    if args.command == "list":
        for name in available_detectors():
            cls = detector_class(name)
            print(f"{name:18s} {cls.learning_type:10s} epochs={cls.default_epochs} "
                  f"quick={cls.quick_epochs} gpu={cls.needs_gpu} notebook={cls.notebook}")
        return 0
    if args.command in ("fit", "score"):
        return _fit_or_score(args)
    if args.command == "cost":
        run_cost(args.dataset, args.normal_class, methods=args.methods, quick=args.quick)
        return 0
    if args.command == "table":
        df = load_results(*args.paths)
        if df.empty:
            print("no rows")
            return 1
        print(per_class_table(df, args.metric, args.by).to_string())
        return 0
    classes = "all" if args.classes == ["all"] else [_class_index(c) for c in args.classes]
    params = _parse_set(args.set)
    if args.epochs is not None:
        params["num_epochs"] = args.epochs
    if args.transfer and args.backend != "local":
        parser.error("--transfer runs with --backend local only")
    if args.pretrain_task and not args.transfer:
        parser.error("--pretrain-task goes with --transfer")
    if args.transfer and args.selection != "clean":
        parser.error("--selection applies to the one-class grid, not to --transfer")
    if args.transfer:
        run_transfer(args.method, *args.transfer, rates=args.rates, seeds=args.seeds,
                     mode=args.mode, normal_classes=[0] if classes == "all" else classes,
                     quick=args.quick, params=params, variant=args.variant, out=args.out,
                     max_train=args.max_train, max_test=args.max_test, root=args.data_root,
                     verify=not args.no_verify, verbose=not args.quiet, replace=args.replace,
                     download=args.download, pretrain_task=args.pretrain_task)
        return 0
    run_grid(args.method, args.dataset, classes, args.seeds, quick=args.quick, params=params,
             variant=args.variant, out=args.out, max_train=args.max_train,
             max_test=args.max_test, root=args.data_root, verbose=not args.quiet,
             protocol=_parse_set(args.protocol), dev=args.dev,
             outlier_ratios=args.outlier_ratios, backend=args.backend,
             ray_address=args.ray_address, ray_num_cpus=args.ray_cpus,
             ray_num_gpus=args.ray_gpus, replace=args.replace, verify=not args.no_verify,
             download=args.download, selection=args.selection, size=args.size)
    return 0


def _fit_and_score_parsers(sub) -> None:
    f = sub.add_parser("fit", help="fit a detector on a dataset (your own images) and save it",
                       description="Fit a registered deep detector on the normal class of a "
                       "dataset and save it with its preprocessing and threshold.")
    f.add_argument("method", help=f"a registered detector: {', '.join(available_detectors())}")
    f.add_argument("--dataset", required=True,
                   help="a folder of your own images (MVTec AD's layout: train/good, test/good, "
                        "test/<defect>; or normal/ and abnormal/) or a registered dataset name")
    f.add_argument("--save", required=True, metavar="MODEL", help="the model file to write")
    f.add_argument("--class", dest="normal_class", type=int, default=0,
                   help="the normal class (default 0: good / normal in a folder)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--epochs", type=int, help="override the method's epoch budget")
    f.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="detector parameters")
    f.add_argument("--size", type=int, help="resize every image to SIZE x SIZE")
    f.add_argument("--quick", action="store_true", help="quick mode: capped epochs")
    f.add_argument("--data-root", help="data folder of registered names (default $ADLIB_DATA)")
    f.add_argument("--quiet", action="store_true")
    s = sub.add_parser("score", help="score images with a model saved by fit",
                       description="Score image files and folders with a saved model: the "
                       "score, the label at the saved threshold and, for methods that "
                       "reconstruct, an anomaly map per image.")
    s.add_argument("model", help="a model file written by python -m adlib fit")
    s.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    s.add_argument("--csv", help="write the table here, and the anomaly maps as PNG into "
                                 "<csv stem>_maps beside it (default: the table on stdout)")
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--quiet", action="store_true")


def _fit_or_score(args) -> int:
    from .apply import fit_and_save, score_files  # torch-heavy: only when asked for

    if args.command == "fit":
        params = _parse_set(args.set)
        if args.epochs is not None:
            params["num_epochs"] = args.epochs
        detector = fit_and_save(args.method, args.dataset, args.save,
                                normal_class=args.normal_class, seed=args.seed, params=params,
                                size=args.size, quick=args.quick, root=args.data_root,
                                verbose=not args.quiet)
        print(f"saved {args.method} ({detector.epochs_run_} epochs, threshold "
              f"{detector.threshold_:.6g}) to {args.save}")
        return 0
    table = score_files(args.model, args.inputs, csv=args.csv, batch_size=args.batch_size,
                        verbose=not args.quiet)
    if args.csv is None:
        print(table.to_csv(index=False), end="")
    else:
        maps = " and anomaly maps beside it" if "map" in table else ""
        print(f"{len(table)} images, {int(table['label'].sum())} above the threshold: "
              f"{args.csv}{maps}")
    return 0
