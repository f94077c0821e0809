"""Loading task and method specs from TOML (``tasks/*.toml``, ``baselines/*.toml``).

Specs are data shipped inside the wheel (resource packages
``genseg_bench.tasks_data`` and ``genseg_bench.baselines_data``). A file holds
``[[task]]`` or ``[[method]]`` tables. A table may say ``extends = "other-id"``
to start from another entry (of any file) and override keys, the way
lm-evaluation-harness uses ``include``: ablations stay one small record each.

Loading validates everything a spec says before any run can start, and every
error names the file and the valid choices: unknown keys, a method's unknown
``kind``, unknown ``config`` keys or values of its kind's typed model
(:mod:`genseg_bench.methods.config`; augmentation ops included) and unknown
backbones (:mod:`genseg_bench.models.backbones`). None of it imports torch. The
config of an outside kind (an entry point or ``module:Class``) is checked when
its class is built, since loading the class could import anything.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from genseg_bench.errors import SpecError, unknown
from genseg_bench.methods.config import BUILTIN_CONFIGS, parse_config
from genseg_bench.methods.registry import available_kinds, is_known_kind
from genseg_bench.models.backbones import check_backbone, smp_architectures
from genseg_bench.profiles import PROFILES
from genseg_bench.specs import ClaimSpec, MethodSpec, SuiteSpec, TaskSpec

SPECS_ENV = "GENSEG_BENCH_SPECS"
"""Folders of a user's own spec files (``os.pathsep``-separated), read after the shipped ones."""
USER_KINDS = ("task", "method", "suite", "claim")
"""The tables a user's spec folder may hold."""


def user_spec_dirs(value: str) -> list[Path]:
    """The folders named by ``GENSEG_BENCH_SPECS``; one that is not a folder is an error naming it."""
    dirs = [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]
    for d in dirs:
        if not d.is_dir():
            raise SpecError(
                f"{SPECS_ENV} names {d}, which is not a folder. Point it at folders of spec files "
                f"(TOML with [[method]] / [[task]] / [[suite]] / [[claim]] tables), or unset it."
            )
    return dirs


def _resource_dir(package: str) -> Path:
    return Path(str(resources.files(package)))


def _read_tables(
    directory: Path, key: str, others: tuple[str, ...] = ()
) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``[[key]]`` table of the folder's TOML files; ``others`` are table kinds read by another pass."""
    tables: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(directory.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{path}: not valid TOML ({exc}). Fix the syntax of that file.") from exc
        extra = set(data) - {key, *others}
        if extra:
            raise SpecError(
                f"{path}: unknown top-level keys {sorted(extra)}; only "
                f"{' and '.join(f'[[{k}]]' for k in (key, *others))} tables are allowed."
            )
        for table in data.get(key, []):
            tables.append((path, table))
    return tables


def _resolve(
    tables: list[tuple[Path, dict[str, Any]]], id_key: str
) -> dict[str, tuple[Path, dict[str, Any]]]:
    by_id: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path, table in tables:
        ident = table.get(id_key)
        if not isinstance(ident, str):
            raise SpecError(f"{path}: an entry has no string {id_key!r}: {table}")
        if ident in by_id:
            raise SpecError(f"{path}: {id_key} {ident!r} is defined twice (also in {by_id[ident][0]}).")
        by_id[ident] = (path, table)

    resolved: dict[str, tuple[Path, dict[str, Any]]] = {}

    def resolve(ident: str, chain: tuple[str, ...]) -> dict[str, Any]:
        if ident in resolved:
            return resolved[ident][1]
        path, table = by_id[ident]
        parent = table.get("extends")
        merged: dict[str, Any]
        if parent is None:
            merged = dict(table)
        else:
            if parent not in by_id:
                raise SpecError(f"{path}: {ident!r} extends unknown entry {parent!r}.")
            if parent in chain:
                raise SpecError(f"{path}: circular 'extends' chain {' -> '.join((*chain, parent))}.")
            base = {k: v for k, v in resolve(parent, (*chain, ident)).items() if k not in ("extends",)}
            merged = _merge(base, {k: v for k, v in table.items() if k != "extends"})
        merged.pop("extends", None)
        resolved[ident] = (path, merged)
        return merged

    for ident in by_id:
        resolve(ident, (ident,))
    return resolved


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Override ``base`` with ``over``; nested ``config`` tables merge key by key."""
    out = dict(base)
    for k, v in over.items():
        if k == "config" and isinstance(v, dict) and isinstance(base.get(k), dict):
            out[k] = {**base[k], **v}
        else:
            out[k] = v
    # an override of references/figure/description belongs to the child alone
    return out


def _validate(model: type, resolved: dict[str, tuple[Path, dict[str, Any]]], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ident, (path, table) in resolved.items():
        try:
            out[ident] = model.model_validate(table)
        except ValidationError as exc:
            lines = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(entry)'}: {e['msg']}" for e in exc.errors()
            )
            raise SpecError(f"{path}: {what} {ident!r} is invalid: {lines}. Fix that entry.") from exc
    return out


def _check_method(path: Path, spec: MethodSpec, smp_names: tuple[str, ...]) -> None:
    """Kind, config and backbone of a validated method spec; errors name the file and the valid choices.

    ``smp_names``: segmentation_models_pytorch's architecture names, read once per load.
    """
    where = f"{path}: method {spec.name!r}"
    if not is_known_kind(spec.kind):
        raise SpecError(
            f"{where}: {unknown('method kind', spec.kind, available_kinds())} An outside method's kind is "
            "its entry-point name (group genseg_bench.methods) or 'package.module:ClassName'."
        )
    model = BUILTIN_CONFIGS.get(spec.kind)
    if model is not None:
        parse_config(model, spec.config, where)
    try:
        check_backbone(spec.backbone, spec.encoder_weights, smp_names)
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None


def _check_claim(
    path: Path, claim: ClaimSpec, tasks: dict[str, TaskSpec], methods: dict[str, MethodSpec]
) -> None:
    """A claim names a known task, its test set, two known methods and a known profile."""
    where = f"{path}: claim {claim.id!r}"
    if claim.task not in tasks:
        raise SpecError(f"{where} names unknown task {claim.task!r}.")
    sets = [t.name for t in tasks[claim.task].test_sets]
    if claim.test_set not in sets:
        raise SpecError(f"{where}: task {claim.task!r} has no test set {claim.test_set!r} (it has {sets}).")
    for m in (claim.method, claim.baseline):
        if m not in methods:
            raise SpecError(f"{where} names unknown method {m!r}.")
    if claim.profile not in PROFILES:
        raise SpecError(f"{where} names unknown profile {claim.profile!r} (known: {sorted(PROFILES)}).")


@dataclass(frozen=True)
class Catalog:
    """All task and method specs, loaded once and passed around (no global registry)."""

    tasks: dict[str, TaskSpec]
    methods: dict[str, MethodSpec]
    suites: dict[str, SuiteSpec] = field(default_factory=dict)
    claims: dict[str, ClaimSpec] = field(default_factory=dict)
    """The paper's claims and the comparisons that test them (``[[claim]]`` tables; genseg_bench.verdicts)."""

    @classmethod
    def load(
        cls,
        tasks_dir: Path | None = None,
        methods_dir: Path | None = None,
        user_dirs: Sequence[Path] | None = None,
    ) -> Catalog:
        """The shipped specs plus a user's own (``user_dirs``; default: the folders of ``GENSEG_BENCH_SPECS``).

        A user folder's TOML files may hold ``[[task]]``, ``[[method]]``, ``[[suite]]`` and ``[[claim]]``
        tables, validated like the shipped ones; an entry may extend a shipped one, and a name defined
        twice is an error naming both files. So a new configuration of a method never has to be written
        into the package (which would make the checkout dirty, and ``submit`` refuses that).
        """
        tdir = tasks_dir or _resource_dir("genseg_bench.tasks_data")
        mdir = methods_dir or _resource_dir("genseg_bench.baselines_data")
        extra = user_spec_dirs(os.environ.get(SPECS_ENV, "")) if user_dirs is None else list(user_dirs)

        def tables(directory: Path, key: str, others: tuple[str, ...]) -> list[tuple[Path, dict[str, Any]]]:
            user = [t for d in extra for t in _read_tables(d, key, tuple(k for k in USER_KINDS if k != key))]
            return _read_tables(directory, key, others) + user

        tasks = _validate(TaskSpec, _resolve(tables(tdir, "task", ("suite", "claim")), "id"), "task")
        method_tables = _resolve(tables(mdir, "method", ()), "name")
        methods = _validate(MethodSpec, method_tables, "method")
        smp_names = smp_architectures()
        for name, spec in methods.items():
            _check_method(method_tables[name][0], spec, smp_names)
        suite_tables = _resolve(tables(tdir, "suite", ("task", "claim")), "id")
        suites = _validate(SuiteSpec, suite_tables, "suite")
        for sid, suite in suites.items():
            missing = [t for t in suite.tasks if t not in tasks]
            if missing:
                raise SpecError(f"{suite_tables[sid][0]}: suite {sid!r} names unknown tasks {missing}.")
        claim_tables = _resolve(tables(tdir, "claim", ("task", "suite")), "id")
        claims = _validate(ClaimSpec, claim_tables, "claim")
        for cid, claim in claims.items():
            _check_claim(claim_tables[cid][0], claim, tasks, methods)
        return cls(tasks=tasks, methods=methods, suites=suites, claims=claims)

    def task(self, task_id: str) -> TaskSpec:
        if task_id not in self.tasks:
            raise unknown("task", task_id, list(self.tasks))
        return self.tasks[task_id]

    def method(self, name: str) -> MethodSpec:
        """A method spec by name; an outside method (entry point or ``module:Class``) gets a default spec."""
        if name not in self.methods:
            from genseg_bench.methods.registry import outside_method_spec

            spec = outside_method_spec(name)
            if spec is None:
                raise unknown("method", name, list(self.methods))
            return spec
        return self.methods[name]

    def suite(self, suite_id: str) -> SuiteSpec:
        if suite_id not in self.suites:
            raise unknown("suite", suite_id, list(self.suites))
        return self.suites[suite_id]

    def suite_tasks(self, suite_id: str) -> list[TaskSpec]:
        """The tasks of a suite: its list in order, or every task its filter selects (sorted by id)."""
        suite = self.suite(suite_id)
        if suite.tasks:
            return [self.tasks[t] for t in suite.tasks]
        assert suite.where is not None
        return [t for _, t in sorted(self.tasks.items()) if suite.where.matches(t)]
