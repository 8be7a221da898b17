"""The three joins of json:policy, one key group at a time, over encoded values.

``FindFindings`` spills every side of every join to sorted run files (``stella.sorting``)
and co-groups them back with a sort-merge, one join key at a time; these pure functions
are what happens to one key's group. Items they return are ``(side, key, value)``: the
side they feed next, its join key, the encoded value (:mod:`stella.findings.wire`).

    record_items:    advisory -> revisions[upstream id] (its rank and already-read packages);
                     SBOM -> components[package];
                     VEX -> statements[each vulnerability id]
    pick_latest:     revisions[id]                        -> advisories[package]
    join_package:    components[package] x advisories[package] -> matches[vulnerability]
    evaluate_vulnerability: matches[id] x statements[id]  -> finding items + counts

Every function is order-free within a group (the outputs are sorted downstream), so
neither run boundaries nor worker count can change a finding.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from operator import itemgetter

from stella.adapters.trivy.dbitems import is_osv_advisory
from stella.findings.advisories import advisory_affected, revision_rank
from stella.findings.components import is_sbom_record, sbom_components
from stella.findings.evaluate import evaluate_matches
from stella.findings.match import match_partition
from stella.findings.vex import is_vex_record, vex_statements
from stella.findings.wire import decode, encode
from stella.model import LedgerRecord
from stella.policy.language import Policy
from stella.sorting import SortItem

__all__ = [
    "ADVISORIES",
    "COMPONENTS",
    "MATCHES",
    "REVISIONS",
    "STATEMENTS",
    "evaluate_vulnerability",
    "join_package",
    "pick_latest",
    "record_items",
]

REVISIONS = "revisions"
COMPONENTS = "components"
STATEMENTS = "statements"
ADVISORIES = "advisories"
MATCHES = "matches"

Groups = Mapping[str, Sequence[bytes]]


def _package(key: tuple[str, str]) -> bytes:
    return "\x00".join(key).encode("utf-8")


def record_items(record: LedgerRecord) -> list[SortItem]:
    """What one ledger record brings to the joins (nothing for other kinds)."""
    if is_osv_advisory(record):
        # Read here, once, rather than after picking: the revision carries its packages as
        # ready-encoded items, so the pick passes bytes through and the document itself
        # never goes to disk (an older revision's reading is the price; revisions are few).
        packages = [(_package(a.key), encode(a)) for a in advisory_affected(record)]
        return [(REVISIONS, record.upstream_id.encode("utf-8"), encode((revision_rank(record), packages)))]
    if is_sbom_record(record):
        return [(COMPONENTS, _package(c.ref.key), encode(c)) for c in sbom_components(record)]
    if is_vex_record(record):
        return [(STATEMENTS, vid.encode("utf-8"), encode(s)) for s in vex_statements(record) for vid in s.ids]
    return []


def pick_latest(_key: bytes, groups: Groups, _context: object = None) -> tuple[list[SortItem], Counter[str]]:
    """Every revision of one advisory id -> the latest revision's packages (the ledger keeps all,
    but unioning revisions would resurrect ranges a feed has since corrected)."""
    _rank, packages = max((decode(v) for v in groups[REVISIONS]), key=itemgetter(0))
    return [(ADVISORIES, key, value) for key, value in packages], Counter()


def join_package(_key: bytes, groups: Groups, _context: object = None) -> tuple[list[SortItem], Counter[str]]:
    """One package's components x its advisories -> the matches, keyed by vulnerability."""
    if not groups[COMPONENTS] or not groups[ADVISORIES]:
        return [], Counter()
    matches = match_partition(map(decode, groups[COMPONENTS]), map(decode, groups[ADVISORIES]))
    return [(MATCHES, m.vulnerability.encode("utf-8"), encode(m)) for m in matches], Counter()


def evaluate_vulnerability(
    policy: Policy, _key: bytes, groups: Groups, as_of: str
) -> tuple[list[SortItem], Counter[str]]:
    """One vulnerability's matches x the VEX statements naming it -> finding items and counts.

    Bind ``policy`` first (``functools.partial``); ``as_of`` is the export's evaluation time.
    """
    if not groups[MATCHES]:
        return [], Counter()
    return evaluate_matches(map(decode, groups[MATCHES]), map(decode, groups[STATEMENTS]), policy, as_of)
