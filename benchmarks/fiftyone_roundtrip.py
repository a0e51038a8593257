"""Read an ``ogaudit export fiftyone`` folder back with FiftyOne's own importer, in any environment that has
fiftyone (it is not in ogaudit's test environment: it would downgrade plotly).

    python benchmarks/fiftyone_roundtrip.py OUT

``FiftyOneImageClassificationDatasetImporter`` is the class ``fo.Dataset.from_dir(OUT,
fo.types.FiftyOneImageClassificationDataset)`` uses; it runs without FiftyOne's database, so this works where the
database cannot start. Prints the sample count, the classes and the first sample's label and attributes; exits 1
when a sample lacks an attribute the export promises.
"""

from __future__ import annotations

import sys

FIELDS = ("sample_id", "score", "rank", "flagged", "p_wrong", "suggested_label", "predicted_label", "decision")


def main(folder: str) -> int:
    import fiftyone.utils.data as foud

    importer = foud.FiftyOneImageClassificationDatasetImporter(dataset_dir=folder)
    with importer:
        samples = list(importer)
        classes = importer.get_dataset_info()["classes"]
    missing = [path for path, _, label in samples if any(not label.has_field(f) for f in FIELDS)]
    path, _, label = samples[0]
    print(f"{len(samples)} samples, classes {classes}")
    print(path, label.label, {f: label[f] for f in (*FIELDS, "reviewed_label")}, "confidence", label.confidence)
    flagged = sum(bool(label["flagged"]) for _, _, label in samples)
    print(f"{flagged} flagged; {len(missing)} samples lack a field")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
