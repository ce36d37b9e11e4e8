"""Where each domain's adapted versions and their state live: one directory tree that every
replica mounts (a shared volume in production, ``<data_dir>/adaptation`` embedded), so a version
promoted by one replica serves on all of them once they see ``state.json`` change.

Layout under the root::

    <tenant>/<domain>/state.json            served version, versions, last run (atomic replace)
    <tenant>/<domain>/versions/v<N>/model/  head.safetensors, manifest.json (a job's output)
    <tenant>/<domain>/versions/v<N>/report.json
    <tenant>/<domain>/.state.lock           flock held while state.json is read and rewritten
    <tenant>/<domain>/.run.lock             flock held by the run of the domain (without Redis)
    .runs/<run_id>/in, out, job.log         a run's input and output, removed when it ends
    .trash/                                 a deleted domain's tree, renamed here, then removed

Tenant and domain names are the API's (``[a-z0-9][a-z0-9_-]{0,63}``): safe as path parts,
and never a dot-name like ``.runs``. Every write of ``state.json`` is a read-modify-write under
the domain's state lock (so a rollback on one replica and a publish on another never lose
either) and an atomic replace (a reader sees the old or the new state, never half). A domain's
deletion renames its tree away under the same lock: a writer that waited for the lock finds
its domain gone (:class:`DomainGone`) instead of writing into the removed tree.

Pure filesystem code, synchronous: the gateway calls it in a thread. It imports no torch (the
gateway may serve without it).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from nerve.errors import Conflict, NerveError, NotFound

NAME_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,63}$"
STATE_FILE = "state.json"
# What a run writes into its output directory (nerve.adaptation.job) and a promotion moves in.
REPORT_FILE = "report.json"
MODEL_DIR = "model"
STATE_LOCK = ".state.lock"
RUN_LOCK = ".run.lock"
VERSIONS = "versions"
RUNS = ".runs"
TRASH = ".trash"
JOB_LOG = "job.log"
# The served-version stack a rollback to "the previous version" pops: this many kept.
MAX_SERVED_STACK = 50
# What a run leaves when its gateway died mid-run is swept once this old (beyond the timeout).
STALE_RUN_MARGIN_S = 600.0

RunStatus = Literal["queued", "running", "succeeded", "not_promoted", "failed"]
Trigger = Literal["auto", "manual"]


class DomainGone(Conflict):
    """The domain's adaptation tree was deleted (or never made): nothing may be written there."""


class PublishRejected(NerveError):
    """A finished job's output cannot become a version (missing, unreadable or digest mismatch)."""


class _Previous:
    """The default of :meth:`AdaptationStore.rollback`: back to the previously served version."""

    def __repr__(self) -> str:
        return "PREVIOUS"


PREVIOUS = _Previous()


@dataclass(frozen=True)
class ServedVersion:
    version: int
    directory: Path  # the version's model directory (head.safetensors, manifest.json)
    manifest_sha256: str


@dataclass(frozen=True)
class RunDirs:
    root: Path
    input: Path
    output: Path
    log: Path


class VersionRecord(BaseModel):
    """One fitted version and the held-out scores that decided its promotion."""

    version: int
    run_id: str
    created_at: float
    examples: int
    heldout_f1_domain: float
    heldout_f1_fewshot: float
    wins: bool
    promoted: bool
    reason: str
    manifest_sha256: str
    bytes: int = 0
    report: dict[str, Any] = Field(default_factory=dict)


class RunRecord(BaseModel):
    run_id: str
    trigger: Trigger
    status: RunStatus
    queued_at: float
    started_at: float | None = None
    finished_at: float | None = None
    examples: int | None = None
    version: int | None = None
    error: str | None = None
    host: str = ""  # the gateway running it (and its job's pid while it runs)
    pid: int | None = None


class ServedChange(BaseModel):
    version: int | None  # None: the few-shot path
    at: float
    why: str


class AdaptationState(BaseModel):
    """``state.json`` of one domain."""

    tenant: str
    domain: str
    # The domain's creation time when this state began: a leftover of a deleted domain of the
    # same name is told apart from the new domain's own state.
    domain_created_at: float = 0.0
    # The served versions (None: the few-shot path), the current last; empty: few-shot. A
    # rollback to "the previous" pops the current one.
    served_stack: list[int | None] = Field(default_factory=list)
    versions: list[VersionRecord] = Field(default_factory=list)
    history: list[ServedChange] = Field(default_factory=list)
    last_run: RunRecord | None = None
    queued: RunRecord | None = None
    # Pool size at the last run that ended by itself (not stopped with its gateway): the
    # base of the growth that starts the next automatic run.
    examples_at_last_run: int | None = None
    updated_at: float = 0.0

    @property
    def served(self) -> int | None:
        return self.served_stack[-1] if self.served_stack else None

    def version(self, number: int | None) -> VersionRecord | None:
        return next((v for v in self.versions if v.version == number), None)

    @property
    def latest(self) -> VersionRecord | None:
        return self.versions[-1] if self.versions else None


def check_name(kind: str, name: str) -> str:
    if re.fullmatch(NAME_PATTERN, name) is None:
        raise ValueError(f"{kind} name {name!r} is not a safe path part ({NAME_PATTERN})")
    return name


def file_sha256(path: Path) -> str:
    """The file's sha256 (hex): what a version's manifest and weights are checked by."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class AdaptationStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    # --- paths -------------------------------------------------------------------------------
    def domain_dir(self, tenant: str, domain: str) -> Path:
        return self.root / check_name("tenant", tenant) / check_name("domain", domain)

    def version_dir(self, tenant: str, domain: str, version: int) -> Path:
        return self.domain_dir(tenant, domain) / VERSIONS / f"v{version}"

    # --- what serving reads --------------------------------------------------------------------
    def served(self, tenant: str, domain: str) -> ServedVersion | None:
        """The version that answers the domain's requests; None: the few-shot path."""
        state = self._read(tenant, domain)
        record = None if state is None else state.version(state.served)
        if record is None:
            return None
        directory = self.version_dir(tenant, domain, record.version) / "model"
        return ServedVersion(record.version, directory, record.manifest_sha256)

    def state_stamp(self, tenant: str, domain: str) -> int | None:
        """Changes whenever ``state.json`` is rewritten (each write is a new file: its inode,
        time and size together, since one of them alone may repeat); None without a state."""
        try:
            stat = (self.domain_dir(tenant, domain) / STATE_FILE).stat()
        except FileNotFoundError:
            return None
        return hash((stat.st_ino, stat.st_mtime_ns, stat.st_size))

    def state(self, tenant: str, domain: str) -> AdaptationState:
        """The domain's state (an empty one when it never had a run)."""
        return self._read(tenant, domain) or AdaptationState(tenant=tenant, domain=domain)

    # --- a run's life --------------------------------------------------------------------------
    def queue(
        self, tenant: str, domain: str, run: RunRecord, domain_created_at: float
    ) -> AdaptationState:
        """Mark ``run`` queued (creating the domain's tree); a state left by an earlier domain of
        the same name (another creation time) is dropped first."""
        with self._locked(tenant, domain, create=True) as state:
            if state.domain_created_at != domain_created_at and state.updated_at:
                state = AdaptationState(tenant=tenant, domain=domain)
                self._remove_versions(tenant, domain)
            state.domain_created_at = domain_created_at
            state.queued = run
            return self._write(state)

    def drop_queued(self, tenant: str, domain: str, run_id: str) -> None:
        """Forget a queued run that will not start (its gateway stops, or another run covers it)."""
        with contextlib.suppress(DomainGone), self._locked(tenant, domain) as state:
            if state.queued is not None and state.queued.run_id == run_id:
                state.queued = None
                self._write(state)

    def start(
        self, tenant: str, domain: str, run: RunRecord, domain_created_at: float
    ) -> AdaptationState:
        """``run`` starts (it becomes the last run, and no longer the queued one).
        :class:`DomainGone` when the domain's tree was deleted since it was queued, or belongs
        to a newer domain of the same name."""
        with self._locked(tenant, domain) as state:
            if not state.updated_at or state.domain_created_at != domain_created_at:
                raise DomainGone(f"{tenant}/{domain} was deleted since run {run.run_id} was queued")
            if state.queued is not None and state.queued.run_id == run.run_id:
                state.queued = None
            started = run.model_copy(update={"status": "running", "started_at": time.time()})
            state.last_run = started
            return self._write(state)

    def attach_pid(self, tenant: str, domain: str, run_id: str, pid: int | None) -> None:
        with contextlib.suppress(DomainGone), self._locked(tenant, domain) as state:
            if state.last_run is not None and state.last_run.run_id == run_id:
                state.last_run.pid = pid
                self._write(state)

    def prepare_run(self, run_id: str, *, sweep_older_than_s: float | None = None) -> RunDirs:
        """A fresh directory for a run's input, output and log (outside every domain's tree, so
        deleting the domain mid-run does not pull it from under the job); runs left by a gateway
        that died are swept when older than ``sweep_older_than_s``."""
        runs = self.root / RUNS
        if sweep_older_than_s is not None:
            self._sweep(runs, sweep_older_than_s)
            self._sweep(self.root / TRASH, 0.0)
        root = runs / check_name("run", run_id)
        dirs = RunDirs(root, root / "in", root / "out", root / JOB_LOG)
        dirs.input.mkdir(parents=True)
        dirs.output.mkdir()
        return dirs

    def discard_run(self, run_id: str) -> None:
        shutil.rmtree(self.root / RUNS / check_name("run", run_id), ignore_errors=True)

    def publish(self, tenant: str, domain: str, run_id: str, output: Path) -> AdaptationState:
        """Make the job's output a new version, promoted (served) only if its report says it
        beat the few-shot path on the held-out examples. :class:`DomainGone` when the run is not
        the domain's last (the domain was deleted meanwhile): nothing is written;
        :class:`PublishRejected` when the output is incomplete or its digest is wrong."""
        report_path, model = output / REPORT_FILE, output / MODEL_DIR
        try:
            result = json.loads(report_path.read_text())
            report, digest = dict(result["report"]), str(result["manifest_sha256"])
            wins = bool(report["wins"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise PublishRejected(f"the job's report is missing or unreadable: {error}") from error
        manifest = model / "manifest.json"
        if not manifest.is_file() or file_sha256(manifest) != digest:
            raise PublishRejected("the job's model does not match its report's manifest digest")
        with self._locked(tenant, domain) as state:
            run = state.last_run
            if run is None or run.run_id != run_id or run.status != "running":
                raise DomainGone(f"run {run_id} is not the running run of {tenant}/{domain}")
            number = self._next_version(tenant, domain, state)
            target = self.version_dir(tenant, domain, number)
            target.mkdir(parents=True)
            shutil.copyfile(report_path, target / REPORT_FILE)
            os.replace(model, target / MODEL_DIR)  # one filesystem: the root's
            f1_domain = float(report.get("heldout_f1_domain", 0.0))
            f1_fewshot = float(report.get("heldout_f1_fewshot", 0.0))
            scores = f"held-out F1 {f1_domain:g} (domain model) vs {f1_fewshot:g} (few-shot)"
            reason = (
                "beats the few-shot path: " if wins else "does not beat the few-shot path: "
            ) + scores
            now = time.time()
            state.versions.append(
                VersionRecord(
                    version=number,
                    run_id=run_id,
                    created_at=now,
                    examples=int(report.get("examples", run.examples or 0)),
                    heldout_f1_domain=f1_domain,
                    heldout_f1_fewshot=f1_fewshot,
                    wins=wins,
                    promoted=wins,
                    reason=reason,
                    manifest_sha256=digest,
                    bytes=int(result.get("bytes", 0)),
                    report=report,
                )
            )
            if wins:
                self._push(state, number, f"promoted v{number}: {reason}")
            run.status, run.finished_at = ("succeeded" if wins else "not_promoted"), now
            run.version, run.pid, run.error = number, None, None
            state.examples_at_last_run = run.examples
            return self._write(state)

    def record_failure(
        self, tenant: str, domain: str, run_id: str, error: str, *, counts: bool = True
    ) -> AdaptationState:
        """The run failed; whatever served before keeps serving. ``counts``: it failed by itself
        (the next automatic run waits for the pool to grow), not with its gateway."""
        with self._locked(tenant, domain) as state:
            run = state.last_run
            if run is None or run.run_id != run_id:
                raise DomainGone(f"run {run_id} is not the last run of {tenant}/{domain}")
            if run.status != "running":
                return state  # it ended already (published just before its gateway stopped)
            run.status, run.finished_at, run.error, run.pid = "failed", time.time(), error, None
            if counts:
                state.examples_at_last_run = run.examples
            return self._write(state)

    # --- operators -----------------------------------------------------------------------------
    def rollback(
        self, tenant: str, domain: str, to: int | _Previous | None = PREVIOUS
    ) -> AdaptationState:
        """Serve another version: ``to`` an earlier version (whatever its scores), None the
        few-shot path, by default the one that served before the current one (an undo: the
        served versions are a stack, which promotions and explicit rollbacks push)."""
        if self._read(tenant, domain) is None:  # never adapted: the same refusal, no tree made
            self._roll(AdaptationState(tenant=tenant, domain=domain), to)
        with self._locked(tenant, domain) as state:
            self._roll(state, to)
            return self._write(state)

    def _roll(self, state: AdaptationState, to: int | _Previous | None) -> None:
        domain = state.domain
        if isinstance(to, _Previous):
            if not state.served_stack:
                raise Conflict(f"domain {domain!r} serves the few-shot path: nothing to roll back")
            gone = state.served_stack.pop()
            self._record(state, state.served, f"rolled back from {_named(gone)}")
            return
        if to == state.served:
            raise Conflict(f"domain {domain!r} already serves {_named(to)}")
        if to is not None:
            record = state.version(to)
            if record is None:
                known = ", ".join(str(v.version) for v in state.versions) or "none"
                raise NotFound(f"domain {domain!r} has no adapted version {to} (versions: {known})")
            manifest = self.version_dir(state.tenant, domain, to) / "model" / "manifest.json"
            if not manifest.is_file() or file_sha256(manifest) != record.manifest_sha256:
                raise Conflict(f"version {to} of domain {domain!r}: files missing or corrupt")
        self._push(state, to, f"rolled back to {_named(to)}")

    def delete(self, tenant: str, domain: str) -> bool:
        """Remove the domain's whole tree (its versions and state); False if it had none."""
        directory = self.domain_dir(tenant, domain)
        if not directory.exists():
            return False
        trash = self.root / TRASH / uuid.uuid4().hex
        trash.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._locked(tenant, domain):
                os.replace(directory, trash)  # under the lock: a waiting writer sees it gone
        except DomainGone:
            return False
        shutil.rmtree(trash, ignore_errors=True)
        with contextlib.suppress(OSError):
            directory.parent.rmdir()  # the tenant's directory, once empty
        return True

    # --- internals -----------------------------------------------------------------------------
    def _read(self, tenant: str, domain: str) -> AdaptationState | None:
        try:
            text = (self.domain_dir(tenant, domain) / STATE_FILE).read_text()
        except FileNotFoundError:
            return None
        return AdaptationState.model_validate_json(text)

    def _write(self, state: AdaptationState) -> AdaptationState:
        state.updated_at = time.time()
        directory = self.domain_dir(state.tenant, state.domain)
        temporary = directory / f".{STATE_FILE}.{uuid.uuid4().hex}.tmp"
        try:
            with temporary.open("w") as handle:
                handle.write(state.model_dump_json(indent=1))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, directory / STATE_FILE)
        finally:
            temporary.unlink(missing_ok=True)
        return state

    @contextlib.contextmanager
    def _locked(
        self, tenant: str, domain: str, *, create: bool = False
    ) -> Iterator[AdaptationState]:
        """The domain's state under its state lock; :class:`DomainGone` when its tree does not
        exist (``create``: it is made) or was renamed away while this waited for the lock."""
        directory = self.domain_dir(tenant, domain)
        while True:
            if create:
                directory.mkdir(parents=True, exist_ok=True)
            elif not directory.is_dir():
                raise DomainGone(f"{tenant}/{domain} has no adaptation state")
            path = directory / STATE_LOCK
            try:
                descriptor = os.open(path, os.O_RDWR | os.O_CREAT)
            except FileNotFoundError:  # renamed away (deleted) between the check and the open
                if create:
                    continue
                raise DomainGone(f"{tenant}/{domain} was deleted") from None
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                try:
                    same = os.path.samestat(os.fstat(descriptor), os.stat(path))
                except FileNotFoundError:
                    same = False
                if same:
                    yield self._read(tenant, domain) or AdaptationState(
                        tenant=tenant, domain=domain
                    )
                    return
                if not create:  # the tree was renamed away while this waited for the lock
                    raise DomainGone(f"{tenant}/{domain} was deleted")
            finally:
                os.close(descriptor)

    def _push(self, state: AdaptationState, version: int | None, why: str) -> None:
        state.served_stack = [*state.served_stack, version][-MAX_SERVED_STACK:]
        self._record(state, version, why)

    @staticmethod
    def _record(state: AdaptationState, version: int | None, why: str) -> None:
        change = ServedChange(version=version, at=time.time(), why=why)
        state.history = [*state.history, change][-MAX_SERVED_STACK:]

    def _next_version(self, tenant: str, domain: str, state: AdaptationState) -> int:
        """One past every version recorded or on disk (a crash mid-publish may leave a dir)."""
        numbers = [v.version for v in state.versions]
        versions = self.domain_dir(tenant, domain) / VERSIONS
        if versions.is_dir():
            numbers += [
                int(p.name[1:]) for p in versions.iterdir() if re.fullmatch(r"v\d+", p.name)
            ]
        return max(numbers, default=0) + 1

    def _remove_versions(self, tenant: str, domain: str) -> None:
        shutil.rmtree(self.domain_dir(tenant, domain) / VERSIONS, ignore_errors=True)

    @staticmethod
    def _sweep(directory: Path, older_than_s: float) -> None:
        if not directory.is_dir():
            return
        limit = time.time() - older_than_s
        for entry in directory.iterdir():
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < limit:
                    shutil.rmtree(entry, ignore_errors=True)


def _named(version: int | None) -> str:
    return "the few-shot path" if version is None else f"v{version}"


def this_host() -> str:
    """Who runs a job, for the state (operators look for its process there)."""
    return f"{socket.gethostname()}:{os.getpid()}"
