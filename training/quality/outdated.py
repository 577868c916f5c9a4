"""Outdated rows: made from a document that has changed or gone since. Flagged OUTDATED for review;
the row may still be right (the change may be elsewhere in the document)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from training.quality.findings import Finding
from training.rows import Flag, Provenance, Row


def find_outdated(
    rows: Sequence[tuple[str, Row]],
    provenance: Mapping[str, Provenance],
    current_revisions: Mapping[str, str | None],
) -> list[Finding]:
    """OUTDATED findings for rows whose provenance names a document and the revision it was made
    from, when `current_revisions` (document id -> its revision now, None: deleted) says otherwise.

    A row without provenance, document or revision cannot be judged and is skipped, and so is a
    document missing from `current_revisions` (the caller may pass one bot's documents only): only
    an explicit None means the document is gone.
    """
    findings = []
    for key, _ in rows:
        origin = provenance.get(key)
        if origin is None or origin.document_id is None or origin.document_revision is None:
            continue
        if origin.document_id not in current_revisions:
            continue
        now = current_revisions[origin.document_id]
        name = origin.document_id
        if origin.document:
            name = f"'{origin.document}' ({origin.document_id})"
        if now is None:
            detail = f"document {name} no longer exists"
        elif now != origin.document_revision:
            detail = (
                f"document {name} changed since the row was made "
                f"(revision {origin.document_revision[:12]} -> {now[:12]})"
            )
        else:
            continue
        findings.append(Finding(key, Flag.OUTDATED, detail))
    return findings
