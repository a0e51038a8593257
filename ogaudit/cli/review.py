"""The review commands: ``decisions list|add|undo|redo|import|settle|note|queue``, ``assign``, ``export
decisions|split``, ``export fiftyone|label-studio|hf|parquet|cleanlab``
(:meth:`~ogaudit.project.Project.export`), ``verify``.

They act on a project folder (what ``ogaudit scan --out DIR`` wrote, or one of the app's projects) through
:class:`~ogaudit.project.Project`'s review methods (:meth:`~ogaudit.project.Project.decide`,
:meth:`~ogaudit.project.Project.export_split`, :meth:`~ogaudit.project.Project.verify` ...), the ones a notebook
calls; this module only parses arguments and prints. ``decisions`` and ``export decisions`` read only the
project's tables and ledger; ``export split`` also reads the data; ``verify`` trains (and imports the engine).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

from ogaudit.project import Project
from ogaudit.review.ledger import ACTIONS

TOOL_EXPORTS = {
    "fiftyone": (
        "the flags as FiftyOne's image-classification dataset (fo.Dataset.from_dir(OUT, "
        "fo.types.FiftyOneImageClassificationDataset))",
        "new or empty folder (data/ and labels.json)",
    ),
    "label-studio": (
        "Label Studio tasks with the suggested label as a prediction, and the labeling config (images or texts)",
        "new or empty folder (tasks.json, label_config.xml, images/)",
    ),
    "hf": ("a Hugging Face dataset (datasets.load_from_disk(OUT))", "new or empty folder"),
    "parquet": ("one Parquet table of flags, decisions and the samples", "file to write, ending in .parquet"),
    "cleanlab": ("cleanlab's label-issues frame as CSV", "file to write, ending in .csv"),
}
"""``ogaudit export FORMAT``: what each writes (:func:`ogaudit.export`), and what OUT is."""
TOOL_EXPORT_COLUMNS = (
    "Every sample carries score (higher = more suspicious), rank, flagged, suggested_label, p_wrong (probability "
    "the given label is wrong), p_wrong_low, p_wrong_high (its 90% interval), p_wrong_calibrated (false where the "
    "review card reads 'not yet calibrated'), decision and reviewed_label (the label after the review). Integer labels stay "
    "integers."
)


def add_review_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``export``, ``decisions`` and ``verify`` on ``subparsers``; each sets ``handler(args) -> int``."""
    export = subparsers.add_parser("export", help="write the decisions, or a cleaned copy of the data")
    export_what = export.add_subparsers(dest="export_what", required=True)

    decisions_out = export_what.add_parser("decisions", help="the decisions as a CSV (one row per decided sample)")
    _project_arguments(decisions_out)
    decisions_out.add_argument("--out", required=True, type=Path, help="CSV file to write")
    decisions_out.add_argument("--ids-file", type=Path, help="export only these sample ids (one per line)")
    decisions_out.add_argument("--history", action="store_true", help="every event, undone ones included")
    _json_argument(decisions_out)
    decisions_out.set_defaults(handler=run_export_decisions)

    split = export_what.add_parser("split", help="the data with removals dropped and relabels applied")
    _project_arguments(split)
    split.add_argument("--out", required=True, type=Path, help="new or empty folder for the cleaned data")
    split.add_argument(
        "--drop-undecided-flagged",
        action="store_true",
        help="also drop samples the scan flagged that nobody decided on (or marked unsure)",
    )
    _json_argument(split)
    split.set_defaults(handler=run_export_split)

    for name, (what, out_help) in TOOL_EXPORTS.items():
        tool = export_what.add_parser(name, help=what, description=f"{what}. {TOOL_EXPORT_COLUMNS}")
        _project_arguments(tool)
        tool.add_argument("out", type=Path, help=out_help)
        if name == "label-studio":
            tool.add_argument(
                "--url-prefix",
                help="what goes before each image's path in OUT (default /data/local-files/?d= : Label Studio's "
                "local files, served with LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=OUT)",
            )
        _json_argument(tool)
        tool.set_defaults(handler=run_export_tool, format=name)

    decisions = subparsers.add_parser("decisions", help="list, add, undo or import review decisions")
    decisions_what = decisions.add_subparsers(dest="decisions_what", required=True)
    listing = decisions_what.add_parser("list", help="print the current decision on each decided sample")
    _project_arguments(listing)
    _json_argument(listing)
    listing.set_defaults(handler=run_list)

    _decision_parser(
        decisions_what.add_parser(
            "add",
            help="decide on samples (as the app's buttons do; one call is one undo step)",
            description="confirm: the given label is wrong and the suggested one (or --label) is right; relabel: "
            "set --label; keep: the flag was a false alarm; remove: drop from the data; unsure.",
        ),
        who="--annotator",
        who_help="who decides",
        handler=run_add,
    )

    for kind in ("undo", "redo"):
        toggle = decisions_what.add_parser(kind, help=f"{kind} the annotator's own last decision (one batch)")
        _project_arguments(toggle)
        toggle.add_argument("--annotator", required=True, help="whose decision")
        toggle.set_defaults(handler=run_toggle, kind=kind)

    _decision_parser(
        decisions_what.add_parser(
            "settle",
            help="settle samples (disputed ones) with a decision that outranks every annotator's",
            description="A reviewer's settlement is the samples' state, and so what every export uses, until the "
            "reviewer undoes it (`decisions undo --annotator REVIEWER`). `decisions list` shows what is disputed.",
        ),
        who="--reviewer",
        who_help="who settles",
        handler=run_settle,
    )

    noting = decisions_what.add_parser(
        "note", help="set the note and tags of samples (they replace earlier ones; none clears them)"
    )
    noting.add_argument("ids", nargs="+", help="sample ids")
    _project_arguments(noting)
    noting.add_argument("--annotator", required=True, help="who writes")
    noting.add_argument("--note", default="", help="free text")
    noting.add_argument("--tags", default="", help="comma-separated tags, e.g. ambiguous,bad image")
    _json_argument(noting)
    noting.set_defaults(handler=run_note)

    queue = decisions_what.add_parser("queue", help="one annotator's assigned samples and how far they are")
    _project_arguments(queue)
    queue.add_argument("--annotator", required=True, help="whose queue")
    _json_argument(queue)
    queue.set_defaults(handler=run_queue)

    backup = decisions_what.add_parser(
        "backup", help="a consistent copy of the ledger, also while annotators work (SQLite's online backup)"
    )
    _project_arguments(backup)
    backup.add_argument("--out", required=True, type=Path, help="the copy to write (a .sqlite file)")
    backup.set_defaults(handler=run_backup)

    importing = decisions_what.add_parser("import", help="add the decisions of a CSV made elsewhere")
    importing.add_argument("file", type=Path, help="decisions CSV (as written by `ogaudit export decisions`)")
    _project_arguments(importing)
    importing.add_argument("--annotator", required=True, help="who imports; one undo takes the import back")
    _json_argument(importing)
    importing.set_defaults(handler=run_import)

    assigning = subparsers.add_parser(
        "assign",
        help="split the review among annotators, each sample to --overlap of them",
        description="Deals the samples (the flagged ones, most suspicious first, or --ids-file) out to the "
        "annotators in turn, each sample to --overlap different people: balanced (everyone gets the same number, "
        "give or take one) and deterministic. A later assignment replaces the assignees of the samples it names; "
        "decisions are kept. `decisions list` and `decisions queue` show where everyone stands.",
    )
    _project_arguments(assigning)
    assigning.add_argument("--annotators", required=True, help="comma-separated names, e.g. ana,ben,cy")
    assigning.add_argument("--overlap", type=int, default=1, help="annotators per sample (default 1)")
    assigning.add_argument("--ids-file", type=Path, help="assign these sample ids (one per line, in order)")
    assigning.add_argument("--by", default=None, help="who assigns (recorded; default $USER)")
    _json_argument(assigning)
    assigning.set_defaults(handler=run_assign)

    verify = subparsers.add_parser(
        "verify",
        help="retrain on the data before and after the decisions; compare held-out accuracy",
        description="The paper's trim-and-retrain check: the scan's model recipe is trained twice, on the data as "
        "given and as cleaned by the decisions, and both are scored on a held-out part that is never cleaned (against "
        "the reviewed label where a held-out sample was decided; removed or unsure ones are left out). The verdict "
        "is better or worse only beyond twice the change's standard error (held-out sampling and the seeds' "
        "spread); small data uses a held-out split per seed.",
    )
    _project_arguments(verify)
    verify.add_argument("--holdout", type=float, default=0.2, help="held-out fraction (default 0.2)")
    verify.add_argument(
        "--seeds", type=int, default=3, help="train both models with this many seeds, to see the spread (default 3)"
    )
    verify.add_argument(
        "--drop-undecided-flagged", action="store_true", help="also drop flagged samples nobody decided on"
    )
    _json_argument(verify)
    verify.set_defaults(handler=run_verify)


def _json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout instead of text (for scripts)"
    )


def _say(args: argparse.Namespace, text: str, summary: dict) -> None:
    """``text`` for a person, or with ``--json`` the ``summary`` (``"ok": True`` added) as one line of JSON."""
    if getattr(args, "json", False):
        print(json.dumps({"ok": True, **summary}, default=str))
    else:
        print(text)


def _project_arguments(parser: argparse.ArgumentParser, *, data: bool = False) -> None:
    parser.add_argument("--project", required=True, type=Path, help="project folder (what `ogaudit scan --out` wrote)")
    parser.add_argument(
        "--data",
        help="where the scanned data is now, if it moved (default: the path in PROJECT/run.json); for a folder "
        "that was never scanned, the data reviewed",
    )


def _decision_parser(parser: argparse.ArgumentParser, *, who: str, who_help: str, handler) -> None:
    """The arguments of a command that records decisions (``decisions add``, ``decisions settle``): the action, the
    sample ids, the project, who decides (``who``), ``--label``, ``--note``, ``--json``."""
    parser.add_argument("action", choices=ACTIONS, help="the decision")
    parser.add_argument("ids", nargs="+", help="sample ids")
    _project_arguments(parser)
    parser.add_argument(who, required=True, help=who_help)
    parser.add_argument("--label", help="the right label (relabel; confirm defaults to each sample's suggestion)")
    parser.add_argument("--note", help="a note stored with each decision")
    _json_argument(parser)
    parser.set_defaults(handler=handler)


@contextmanager
def _warnings_printed():
    """Print the project's review warnings (:class:`~ogaudit.project.ReviewMismatchWarning`) as the command line
    says things: ``ogaudit: warning: ...`` on stderr, when they happen."""
    from ogaudit.project import ReviewMismatchWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", ReviewMismatchWarning)
        shown = warnings.showwarning

        def show(message, category, *rest, **options):
            if issubclass(category, ReviewMismatchWarning):
                print(f"ogaudit: warning: {message}", file=sys.stderr)
            else:
                shown(message, category, *rest, **options)

        warnings.showwarning = show
        yield


def _read_ids(path: Path) -> list[str]:
    from ogaudit.errors import DataError

    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"Cannot read the ids file {str(path)!r} ({error}); give one sample id per line.") from error
    return [line.strip() for line in lines if line.strip()]


def run_export_decisions(args: argparse.Namespace) -> int:
    ids = _read_ids(args.ids_file) if args.ids_file is not None else None
    with _warnings_printed():
        path = Project(args.project).export_decisions(args.out, ids=ids, history=args.history, data=args.data)
    _say(args, f"wrote {'the history' if args.history else 'the decisions'} to {path}", {"path": str(path)})
    return 0


def run_export_split(args: argparse.Namespace) -> int:
    with _warnings_printed():
        manifest = Project(args.project).export_split(
            args.out, drop_undecided_flagged=args.drop_undecided_flagged, data=args.data
        )
    counts = manifest["counts"]
    text = (
        f"kept {counts['kept']} of {counts['input']} samples ({counts['removed']} removed, "
        f"{counts['relabelled']} relabelled, {counts['dropped_undecided_flagged']} undecided flagged dropped); "
        f"wrote {args.out}"
    )
    _say(args, text, {"path": str(args.out), "counts": counts})
    return 0


def run_export_tool(args: argparse.Namespace) -> int:
    with _warnings_printed(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        path = Project(args.project).export(
            args.out, format=args.format, data=args.data, url_prefix=getattr(args, "url_prefix", None)
        )
    for warning in caught:
        print(f"ogaudit: warning: {warning.message}", file=sys.stderr)
    _say(args, f"wrote the {args.format} export to {path}", {"path": str(path), "format": args.format})
    return 0


def run_list(args: argparse.Namespace) -> int:
    from ogaudit.review.actions import current_progress
    from ogaudit.review.team import annotator_status, sample_status

    project = Project(args.project)
    with _warnings_printed():
        ledger = project.ledger(args.data)
    state = ledger.state()
    progress = current_progress(state, project.flagged_ids() if project.has_run() else [])  # as the app counts
    columns = ["sample_id", "given_label", "action", "final_label", "annotator", "decided_at", "note"]
    team = sample_status(ledger)
    people = annotator_status(ledger, team)
    status = team.set_index("sample_id")["status"]
    if getattr(args, "json", False):  # labels typed as the run's scores and exports are (text in the text view)
        from ogaudit.results import record_integer_labels
        from ogaudit.review.decisions import typed_decisions

        integer = project.has_run() and record_integer_labels(project.read_record())
        shown = typed_decisions(state[columns], integer=integer)
        decisions = shown.astype(object).where(shown.notna(), None).to_dict("records")
        for row in decisions:
            row["status"] = status.get(row["sample_id"])
        samples = team.astype(object).where(team.notna(), None).to_dict("records")
        summary = {"decisions": decisions, "progress": progress.to_dict("records")}
        _say(args, "", {**summary, "samples": samples, "annotators": people.to_dict("records")})
        return 0
    if state.empty and team.empty:
        print("no decisions yet")
        return 0
    if not state.empty:
        shown = state[columns].assign(status=state["sample_id"].map(status))
        print(shown.astype(object).where(shown.notna(), "").to_string(index=False))
        print()
        print(progress.to_string(index=False))
    if len(people) and team["assigned_to"].map(bool).any():
        counts = team["status"].value_counts()
        print()
        print("assignment: " + ", ".join(f"{counts[s]} {s}" for s in counts.index))
        print(people.to_string(index=False, formatters={"progress": "{:.0%}".format}))
        disputed = team[team["status"] == "disputed"]["sample_id"].tolist()
        if disputed:
            print(f"disputed ({len(disputed)}; settle with `ogaudit decisions settle`): {', '.join(disputed[:20])}")
    return 0


def run_assign(args: argparse.Namespace) -> int:
    import getpass

    ids = _read_ids(args.ids_file) if args.ids_file is not None else None
    by = args.by or getpass.getuser()
    people = Project(args.project).assign(args.annotators, overlap=args.overlap, ids=ids, by=by)
    total = int(people["assigned"].sum())
    text = f"assigned {total} sample reviews among {len(people)} annotator(s), overlap {args.overlap}:\n"
    text += people[["annotator", "assigned", "done", "remaining"]].to_string(index=False)
    _say(args, text, {"overlap": args.overlap, "annotators": people.to_dict("records")})
    return 0


def run_settle(args: argparse.Namespace) -> int:
    Project(args.project).settle(args.action, args.ids, reviewer=args.reviewer, label=args.label, note=args.note)
    text = f"settled {len(set(args.ids))} sample(s) as {args.action} for {args.reviewer}"
    _say(args, text, {"action": args.action, "samples": len(set(args.ids)), "reviewer": args.reviewer})
    return 0


def run_note(args: argparse.Namespace) -> int:
    tags = [tag for tag in args.tags.split(",") if tag.strip()]
    Project(args.project).annotate(args.ids, note=args.note, tags=tags, annotator=args.annotator)
    text = f"noted {len(set(args.ids))} sample(s)" + (f" with tags {', '.join(tags)}" if tags else "")
    _say(args, text, {"samples": len(set(args.ids)), "tags": tags, "note": args.note or None})
    return 0


def run_queue(args: argparse.Namespace) -> int:
    from ogaudit.review.team import my_queue

    project = Project(args.project)
    with _warnings_printed():
        ledger = project.ledger(args.data)
    order = project.open_run().table.sort_values("rank")["sample_id"].tolist() if project.has_run() else None
    queue = my_queue(ledger, args.annotator, order)
    done = int(queue["done"].sum())
    if getattr(args, "json", False):
        _say(
            args,
            "",
            {"annotator": args.annotator, "done": done, "assigned": len(queue), "queue": queue.to_dict("records")},
        )
        return 0
    if queue.empty:
        print(f"nothing is assigned to {args.annotator}")
        return 0
    print(f"{args.annotator}: {done} of {len(queue)} assigned samples decided")
    print(queue.to_string(index=False))
    return 0


def run_add(args: argparse.Namespace) -> int:
    Project(args.project).decide(args.action, args.ids, annotator=args.annotator, label=args.label, note=args.note)
    text = f"{args.action}: {len(set(args.ids))} sample(s) recorded for {args.annotator}"
    _say(args, text, {"action": args.action, "samples": len(set(args.ids)), "annotator": args.annotator})
    return 0


def run_backup(args: argparse.Namespace) -> int:
    with _warnings_printed():
        path = Project(args.project).backup(args.out, data=args.data)
    print(
        f"wrote a consistent copy of the ledger to {path} (restore: stop the server, move ledger.sqlite-wal, -shm "
        "and -saved away, copy it over ledger.sqlite)"
    )
    return 0


def run_toggle(args: argparse.Namespace) -> int:
    project = Project(args.project)
    with _warnings_printed():
        toggle = project.undo if args.kind == "undo" else project.redo
        batch = toggle(args.annotator, data=args.data)
    if batch is None:
        print(f"nothing to {args.kind} for {args.annotator}")
        return 1
    done = "undid" if args.kind == "undo" else "redid"
    print(f"{done} the decision on {len(batch.sample_ids)} sample(s): {', '.join(batch.sample_ids[:10])}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    with _warnings_printed():
        report = Project(args.project).verify(
            seeds=args.seeds,
            holdout=args.holdout,
            drop_undecided_flagged=args.drop_undecided_flagged,
            data=args.data,
        )
    _say(args, report.describe(), {**report.to_dict(), "verdict": report.verdict(), "text": report.describe()})
    return 0


def run_import(args: argparse.Namespace) -> int:
    with _warnings_printed():
        report = Project(args.project).import_decisions(args.file, annotator=args.annotator, data=args.data)
    summary = {"stored": report.stored, "already": report.already, "rejected": len(report.rejected)}
    _say(args, report.describe(), {**summary, "text": report.describe()})
    return 1 if report.rejected else 0  # done in part: a script must see refused rows (README, exit codes)
