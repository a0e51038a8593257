"""The review commands of the command line: ``export decisions|split``, ``decisions list|import``, ``verify``.

A project folder holds ``ledger.sqlite`` and, after a scan, ``run.json`` and ``scores.csv``. The commands
reload the scanned dataset (``--data`` overrides ``run.json``) because decisions are checked against it.
Each handler returns an exit code and raises :class:`~ogaudit.errors.OgauditError` for the caller to print.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from ogaudit.data import Dataset, load_dataset
from ogaudit.errors import DataError
from ogaudit.pipeline import AuditSettings, load_run_dataset
from ogaudit.review.exports import export_split, import_decisions, write_decisions_csv
from ogaudit.review.ledger import Ledger, open_project_ledger
from ogaudit.storage import read_json, write_json


def add_review_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``export`` and ``decisions`` on ``subparsers``; each sets ``handler(args) -> int``."""
    export = subparsers.add_parser("export", help="write the decisions, or a cleaned copy of the data")
    export_what = export.add_subparsers(dest="export_what", required=True)

    decisions_out = export_what.add_parser("decisions", help="the decisions as a CSV (one row per decided sample)")
    _project_arguments(decisions_out)
    decisions_out.add_argument("--out", required=True, type=Path, help="CSV file to write")
    decisions_out.add_argument("--ids-file", type=Path, help="export only these sample ids (one per line)")
    decisions_out.add_argument("--history", action="store_true", help="every event, undone ones included")
    decisions_out.set_defaults(handler=run_export_decisions)

    split = export_what.add_parser("split", help="the data with removals dropped and relabels applied")
    _project_arguments(split)
    split.add_argument("--out", required=True, type=Path, help="new or empty folder for the cleaned data")
    split.add_argument(
        "--drop-undecided-flagged",
        action="store_true",
        help="also drop samples the scan flagged that nobody decided on (or marked unsure)",
    )
    split.set_defaults(handler=run_export_split)

    decisions = subparsers.add_parser("decisions", help="list or import review decisions")
    decisions_what = decisions.add_subparsers(dest="decisions_what", required=True)
    listing = decisions_what.add_parser("list", help="print the current decision on each decided sample")
    _project_arguments(listing)
    listing.set_defaults(handler=run_list)
    importing = decisions_what.add_parser("import", help="add the decisions of a CSV made elsewhere")
    importing.add_argument("file", type=Path, help="decisions CSV (as written by `ogaudit export decisions`)")
    _project_arguments(importing)
    importing.add_argument("--annotator", required=True, help="who imports; one undo takes the import back")
    importing.set_defaults(handler=run_import)

    verify = subparsers.add_parser(
        "verify",
        help="retrain on the data before and after the decisions; compare held-out accuracy",
        description="The paper's trim-and-retrain check: the scan's model recipe is trained twice, on the data as "
        "given and as cleaned by the decisions, and both are scored on a held-out part that is never cleaned.",
    )
    _project_arguments(verify)
    verify.add_argument("--holdout", type=float, default=0.2, help="held-out fraction (default 0.2)")
    verify.add_argument(
        "--drop-undecided-flagged", action="store_true", help="also drop flagged samples nobody decided on"
    )
    verify.set_defaults(handler=run_verify)


def _project_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", required=True, type=Path, help="project folder (holds ledger.sqlite)")
    parser.add_argument("--data", help="the dataset reviewed (default: the one named in PROJECT/run.json)")


def run_export_decisions(args: argparse.Namespace) -> int:
    ledger = _open_ledger(args)[1]
    ids = None
    if args.ids_file is not None:
        lines = args.ids_file.read_text(encoding="utf-8-sig").splitlines()
        ids = [line for line in lines if line]
    path = write_decisions_csv(ledger, args.out, ids=ids, history=args.history)
    print(f"wrote {'the history' if args.history else 'the decisions'} to {path}")
    return 0


def run_export_split(args: argparse.Namespace) -> int:
    dataset, ledger = _open_ledger(args)
    flagged = _flagged_ids(args.project) if args.drop_undecided_flagged else None
    manifest = export_split(
        dataset, ledger, args.out, flagged_ids=flagged, drop_undecided_flagged=args.drop_undecided_flagged
    )
    counts = manifest["counts"]
    print(
        f"kept {counts['kept']} of {counts['input']} samples ({counts['removed']} removed, "
        f"{counts['relabelled']} relabelled, {counts['dropped_undecided_flagged']} undecided flagged dropped); "
        f"wrote {args.out}"
    )
    return 0


def run_list(args: argparse.Namespace) -> int:
    ledger = _open_ledger(args)[1]
    state = ledger.state()
    if state.empty:
        print("no decisions yet")
        return 0
    columns = ["sample_id", "given_label", "action", "final_label", "annotator", "decided_at", "note"]
    print(state[columns].to_string(index=False))
    print()
    print(ledger.progress().to_string(index=False))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from ogaudit.pipeline import settings_from_record
    from ogaudit.review.verify import verify_cleaning

    dataset, ledger = _open_ledger(args)
    run_path = args.project / "run.json"
    settings = settings_from_record(read_json(run_path)) if run_path.exists() else AuditSettings()
    flagged = _flagged_ids(args.project) if args.drop_undecided_flagged else None
    report = verify_cleaning(
        dataset,
        ledger.state(),
        settings,
        holdout=args.holdout,
        flagged_ids=flagged,
        drop_undecided_flagged=args.drop_undecided_flagged,
    )
    write_json(args.project / "verify.json", report.to_dict())
    print(report.describe())
    return 0


def run_import(args: argparse.Namespace) -> int:
    ledger = _open_ledger(args)[1]
    report = import_decisions(ledger, args.file, annotator=args.annotator)
    print(report.describe())
    return 0 if report.stored or not report.rejected else 1


def _open_ledger(args: argparse.Namespace) -> tuple[Dataset, Ledger]:
    dataset = _project_dataset(args.project, args.data)
    return dataset, open_project_ledger(args.project, dataset)


def _project_dataset(project: Path, data: str | None) -> Dataset:
    """The dataset the project's scan used (its subset and planted noise), unless ``data`` names another."""
    run_path = project / "run.json"
    if data is not None:
        return load_dataset(data)
    if not run_path.exists():
        raise DataError(f"{str(project)!r} has no run.json naming the dataset; pass --data with the data reviewed.")
    return load_run_dataset(read_json(run_path))


def _flagged_ids(project: Path) -> list[str]:
    path = project / "scores.csv"
    if not path.exists():
        raise DataError(f"--drop-undecided-flagged needs the scan's flags, but {str(path)!r} does not exist.")
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return [row["sample_id"] for row in csv.DictReader(handle) if row["flagged"].strip().lower() in ("true", "1")]
