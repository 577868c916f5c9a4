"""Outdated rows: made from a document whose revision changed, or that is gone; rows without a
document or revision, and documents the caller did not list, are not judged."""

from __future__ import annotations

from training.quality.outdated import find_outdated
from training.rows import Flag, Provenance, Row, Source

ROW = Row(instruction="What is the refund window?", output="30 days.")


def _made_from(document_id: str | None, revision: str | None) -> Provenance:
    return Provenance(
        source=Source.GENERATED,
        document_id=document_id,
        document="Refund policy",
        document_revision=revision,
    )


def test_changed_and_deleted_documents_flag_their_rows() -> None:
    rows = [("a", ROW), ("b", ROW), ("c", ROW), ("d", ROW), ("e", ROW), ("f", ROW)]
    provenance = {
        "a": _made_from("doc_1", "rev_old"),
        "b": _made_from("doc_1", "rev_new"),
        "c": _made_from("doc_2", "rev_x"),
        "d": _made_from("doc_3", "rev_y"),  # not in the map: not judged
        "e": _made_from("doc_1", None),  # no revision: cannot tell
        # "f" has no provenance
    }
    findings = find_outdated(rows, provenance, {"doc_1": "rev_new", "doc_2": None})
    assert [(f.key, f.flag) for f in findings] == [("a", Flag.OUTDATED), ("c", Flag.OUTDATED)]
    assert findings[0].detail == (
        "document 'Refund policy' (doc_1) changed since the row was made "
        "(revision rev_old -> rev_new)"
    )
    assert findings[1].detail == "document 'Refund policy' (doc_2) no longer exists"
