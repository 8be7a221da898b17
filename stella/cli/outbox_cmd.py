"""``stella export ls | prune | plan``: what an output folder holds, keeping it tidy, and dry runs.

``ls`` and ``prune`` read the bundles in an ``--out`` folder (folders and ``.tar.zst``
archives); ``plan`` reads the ledger and applies the selectors without writing anything,
so an operator sees what an export would contain before running it.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stella.bundle.verify import iter_members, verify_bundle
from stella.cli.common import LEDGER_HELP, TENANT_HELP, ledger_root, plural, tenant_of
from stella.errors import NotFoundError, StellaError, UsageError
from stella.guards import strictjson
from stella.ledger.store import LedgerStore
from stella.selectors import parse_selectors, selector_help, selector_warnings

__all__ = ["BundleEntry", "list_bundles", "register"]

_LOG = logging.getLogger("stella.cli")
_ARCHIVE = ".tar.zst"


def register(commands: Any) -> None:
    listing = commands.add_parser(
        "ls", help="list the bundles in an output folder: id, profile, tenant, generatedAt, signed, verified"
    )
    listing.add_argument(
        "out", metavar="OUT", help="the folder bundles were published in (--out of export run)"
    )
    listing.add_argument(
        "--no-verify", action="store_true", help="read manifests only (fast); 'verified' is then unknown"
    )
    listing.set_defaults(handler=_ls)

    prune = commands.add_parser(
        "prune", help="keep the N newest bundles per tenant and profile in an output folder, delete the rest"
    )
    prune.add_argument("out", metavar="OUT", help="the folder bundles were published in")
    prune.add_argument(
        "--keep", type=int, required=True, metavar="N", help="bundles to keep per tenant/profile"
    )
    prune.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    prune.set_defaults(handler=_prune)

    plan = commands.add_parser(
        "plan",
        help="what the selectors would export: record counts per kind, nothing written",
        epilog="selector keys:\n" + selector_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plan.add_argument("--tenant", help=TENANT_HELP)
    plan.add_argument("--ledger", help=LEDGER_HELP)
    plan.add_argument(
        "--selector", action="append", default=[], metavar="KEY=VALUE[,VALUE]", help="as for export run"
    )
    plan.add_argument(
        "--profile",
        default="json:raw",
        help="count what this profile takes of the selection, e.g. trivy:db keeps OSV advisories (default json:raw)",
    )
    plan.set_defaults(handler=_plan)


@dataclass(frozen=True)
class BundleEntry:
    """One bundle found in an output folder."""

    path: Path
    manifest: dict[str, Any] | None
    verified: bool | None = None
    signed: bool = False
    problem: str | None = None

    @property
    def export_id(self) -> str | None:
        return None if self.manifest is None else str(self.manifest.get("exportId"))

    def to_json(self) -> dict[str, Any]:
        manifest = self.manifest or {}
        return {
            "bundle": str(self.path),
            "exportId": self.export_id,
            "profile": (manifest.get("profile") or {}).get("name"),
            "tenant": manifest.get("tenant"),
            "generatedAt": manifest.get("generatedAt"),
            "signed": self.signed,
            "encrypted": bool((manifest.get("options") or {}).get("encryption")),
            "verified": self.verified,
            "problem": self.problem,
        }


def _candidates(out: Path) -> list[Path]:
    if not out.is_dir():
        raise NotFoundError(f"output folder {out} does not exist", details={"out": str(out)})
    found = [p for p in sorted(out.iterdir()) if not p.name.startswith(".")]
    return [p for p in found if (p.is_dir() and (p / "export.json").is_file()) or p.name.endswith(_ARCHIVE)]


def _manifest_only(path: Path) -> dict[str, Any]:
    if path.is_dir():
        value = strictjson.loads((path / "export.json").read_bytes(), what=f"{path}/export.json")
    else:
        value = next(
            (
                strictjson.loads(s.read(), what=f"{path}:export.json")
                for n, s in iter_members(path)
                if n == "export.json"
            ),
            None,
        )
    if not isinstance(value, dict):
        raise UsageError(f"{path} has no readable export.json")
    return value


def list_bundles(out: Path, *, verify: bool) -> list[BundleEntry]:
    """Every bundle folder and archive directly in ``out``, with its manifest and verdict."""
    entries = []
    for path in _candidates(out):
        try:
            if verify:
                checked = verify_bundle(path)
                status = checked.report.signature.get("status")
                entries.append(
                    BundleEntry(path, checked.manifest, checked.report.ok, status not in (None, "unsigned"))
                )
            else:
                manifest = _manifest_only(path)
                signed = path.is_dir() and (path / "signatures").is_dir()
                entries.append(BundleEntry(path, manifest, None, signed))
        except StellaError as exc:
            entries.append(BundleEntry(path, None, False if verify else None, problem=exc.message))
    return entries


def _ls(args: argparse.Namespace) -> int:
    entries = list_bundles(Path(args.out), verify=not args.no_verify)
    args.output.result({"out": args.out, "bundles": [e.to_json() for e in entries]})
    if args.output.json:
        return 0
    if not entries:
        print(f"{args.out}: no bundles")
    for entry in entries:
        row = entry.to_json()
        verdict = {True: "verified", False: "FAILED", None: "not checked"}[entry.verified]
        flags = " ".join(f for f, on in (("signed", row["signed"]), ("encrypted", row["encrypted"])) if on)
        print(
            f"{Path(row['bundle']).name:<48} {row['profile'] or '-':<14} {row['tenant'] or '-':<12} "
            f"{row['generatedAt'] or '-':<21} {flags or 'unsigned':<17} {verdict}"
            + (f"  ({entry.problem})" if entry.problem else "")
        )
    return 0


def _prune(args: argparse.Namespace) -> int:
    if args.keep < 1:
        raise UsageError(f"--keep must be at least 1, not {args.keep}")
    out = Path(args.out)
    groups: dict[tuple[str, str], dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    when: dict[str, str] = {}
    for entry in list_bundles(out, verify=False):
        if entry.manifest is None or entry.export_id is None:
            continue  # never delete what we cannot identify
        manifest = entry.manifest
        key = (str(manifest.get("tenant")), str((manifest.get("profile") or {}).get("name")))
        groups[key][entry.export_id].append(entry.path)
        when[entry.export_id] = str(manifest.get("generatedAt"))
    removed: list[str] = []
    kept: list[str] = []
    for ids in groups.values():
        newest_first = sorted(ids, key=lambda i: (when[i], i), reverse=True)
        kept += newest_first[: args.keep]
        for export_id in newest_first[args.keep :]:
            for path in ids[export_id]:
                removed.append(str(path))
                if args.dry_run:
                    continue
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
    args.output.result(
        {"out": args.out, "keep": args.keep, "dryRun": args.dry_run, "removed": removed, "kept": sorted(kept)}
    )
    if not args.output.json:
        verb = "would remove" if args.dry_run else "removed"
        print(f"{verb} {plural(len(removed), 'bundle file')}; kept {plural(len(kept), 'bundle')}")
        for name in removed:
            print(f"  {name}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from pipelines.registry import keep_for  # the profile's own filter, as its pipeline applies it

    keep = keep_for(args.profile)
    store = LedgerStore(ledger_root(args.ledger))
    tenant = tenant_of(args.tenant)
    selectors = parse_selectors(args.selector)
    warnings = selector_warnings(selectors)
    for warning in warnings:
        _LOG.warning(warning)
    store.require_segments(tenant)
    counts: Counter[str] = Counter()
    scanned = 0
    high_water: str | None = None
    for record in store.read(tenant):
        scanned += 1
        if scanned % 50_000 == 0:
            args.progress.advance("scan", done=50_000)
        if selectors.matches(record) and keep(record):
            counts[record.kind.value] += 1
            high_water = max(high_water or record.high_water, record.high_water)
    args.progress.end("scan")
    result = {
        "tenant": tenant,
        "profile": args.profile,
        "selectors": selectors.to_json(),
        "counts": dict(sorted(counts.items())),
        "records": sum(counts.values()),
        "scanned": scanned,
        "highWater": high_water,
        "warnings": warnings,
    }
    args.output.result(result)
    if not args.output.json:
        listed = ", ".join(f"{kind} {n:,}" for kind, n in sorted(counts.items())) or "nothing"
        print(f"tenant {tenant}, {args.profile}: the selection takes {listed} of {plural(scanned, 'record')}")
        if high_water:
            print(f"generatedAt would be {high_water} (or --as-of)")
    return 0
