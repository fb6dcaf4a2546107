"""``prm label`` as a job: stream the input, label it in fixed chunks, append every finished example to
the output at once, and pick up where a killed run stopped.

What it owns:

- **Streaming.** The input is read lazily through ``data_tools.formats`` (any format ``prm convert``
  reads), twice: a first pass checks every row and counts the work (errors come before any rollout,
  the progress bar gets a total), the second labels. Memory holds one chunk and the set of ids.
- **Ids.** An example is known by ``meta.id`` (which must then be unique), or else by a hash of its
  prompt and steps (``#2``, ``#3`` for repeats), written to ``meta.id`` of the output row.
- **Shards.** ``--shard I/N`` keeps the examples whose problem id (``meta.problem_id``, else the
  example id) hashes to I modulo N: a stable hash, so any scheduler can run shard I anywhere, and
  all solutions of one problem share a shard (their shared prefixes are rolled out once).
- **Appending.** Each example is written as one JSON line as soon as its labels are final, then
  flushed and fsynced: a kill loses at most the line being written.
- **Resuming.** A rerun truncates a partly written last line, skips the examples whose ids are in
  the output, and refuses to continue an output started with other label-affecting settings (kept
  in ``OUTPUT.runs.jsonl``, one start and one end record per run, with each run's report).

Resume exactness (a killed run, rerun, writes exactly the rows of an uninterrupted run, in the same
order): the shard's examples are cut into chunks of ``chunk_size`` consecutive examples, counted
from the start of the input whether done or not, so a chunk's composition never depends on where a
run stopped. A chunk whose examples are all written is skipped; a partly written one is labelled
again in full, and only its missing examples are written. Every batch the completer sees is thus
the same as in the uninterrupted run, which is what makes bf16 HF rollouts (whose logits move with
batch composition) and binary search (whose probes share evidence within a chunk) come out the
same; examples finish in the same order, so the rows land in the same order. The price is at most
one chunk relabelled per restart. Not promised: identical rows across different ``--chunk-size``
or shard counts (same labels in fp32 for Monte-Carlo; other batches in bf16, other evidence for
binary search), or across machines whose kernels round differently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from data_tools import formats, jsonl
from data_tools.completers.protocol import Completer
from data_tools.flags import opt, problems
from data_tools.formats.containers import batched
from data_tools.formats.fields import RowLog
from data_tools.labelling.bank import BatchLabeller, LabelConfig, LabelReport, RolloutBank
from data_tools.labelling.binary import binary_label_batch
from data_tools.labelling.mc import mc_label_batch
from data_tools.labelling.reference import reference_label_batch
from data_tools.progress import Progress, rate
from data_tools.schema import DataError, StepwiseExample

log = logging.getLogger(__name__)


@dataclass
class LabelJobConfig:
    """How ``prm label`` reads, splits and writes (flags of the same names)."""

    input_format: str = opt("stepwise", flag="--format", aliases=("--input-format",), choices=formats.FORMATS)
    """format of INPUT, as in prm convert (the gold answer must be in meta, see --answer-key)"""
    shard: str = "0/1"
    """label only shard I of N (0 <= I < N): the examples whose problem id hashes to I"""
    chunk_size: int = opt(64, min=1)
    """examples labelled together (their rollouts are batched); a resumed run relabels the chunk it stopped in"""
    skip_invalid: bool = False
    """count and skip malformed input rows (and rows without a gold answer) instead of stopping"""
    progress: bool = True
    """show a progress bar (examples, rollouts/s, ETA) on stderr"""

    def problems(self) -> list[str]:
        out = problems(self)
        try:
            self.shard_index()
        except ValueError as exc:
            out.append(str(exc))
        return out

    def shard_index(self) -> tuple[int, int]:
        """(I, N) from ``shard``; ValueError naming --shard when it is not I/N with 0 <= I < N."""
        part, _, total = self.shard.partition("/")
        try:
            i, n = int(part), int(total)
        except ValueError:
            i, n = -1, 0
        if not 0 <= i < n:
            raise ValueError(f"--shard must be I/N with 0 <= I < N (e.g. 0/4 for the first of four), got {self.shard!r}")
        return i, n


@dataclass
class JobResult:
    output: str
    report: LabelReport
    written: int = 0
    """rows appended by this run"""
    already_done: int = 0
    """examples of this shard found in OUTPUT from earlier runs"""
    invalid: RowLog = field(default_factory=RowLog)

    def to_json(self) -> dict[str, Any]:
        return {"output": self.output, "written": self.written, "already_done": self.already_done,
                "skipped_invalid": self.invalid.skipped, **self.report.to_json()}


def runs_path(output: str | Path) -> Path:
    """The run log beside OUTPUT: one start record (settings) and one end record (report) per run."""
    out = Path(output)
    return out.with_name(out.name + ".runs.jsonl")


def run_label_job(input_path: str | Path, output_path: str | Path, completer: Completer | None,
                  label: LabelConfig | None = None, job: LabelJobConfig | None = None,
                  completer_settings: dict[str, Any] | None = None, few_shot: str | None = None) -> JobResult:
    """Label INPUT into OUTPUT (stepwise JSONL) as described in the module docstring; returns this run's result.

    ``completer_settings`` describe what the completer draws (model, sampling): recorded with the
    run and compared on resume, like the label settings. ``few_shot`` replaces the built-in worked
    examples that open every rollout prefix. ``--method reference`` draws no rollouts: its
    ``completer`` may be None.
    """
    label, job = label or LabelConfig(), job or LabelJobConfig()
    out = Path(output_path)
    problems = label.problems() + job.problems() + formats.path_problems(input_path, output_path)
    if completer is None and label.method != "reference":
        problems.append(f"--method {label.method} rolls out from step prefixes and needs a completer (--completer); "
                        "--method reference needs none")
    if out.suffix.lower() not in (".jsonl", ".ndjson"):
        problems.append(f"OUTPUT {output_path}: must be a .jsonl file (rows are appended as they finish); "
                        "convert it afterwards with prm convert")
    if problems:
        raise ValueError("; ".join(problems))
    shard = job.shard_index()
    settings = json.loads(json.dumps({  # as the run log will read it back (tuples as lists)
        # reference_key only where it decides labels: outputs started before it existed still resume
        "label": {k: v for k, v in asdict(label).items() if k != "reference_key" or label.method == "reference"},
        "input_format": job.input_format, "shard": job.shard, "chunk_size": job.chunk_size,
        "completer": completer_settings or {},
        "few_shot_sha256": hashlib.sha256(few_shot.encode()).hexdigest() if few_shot is not None else None}))
    done_ids = _resume(out, settings)
    result = JobResult(str(out), LabelReport(), invalid=RowLog(skip_invalid=job.skip_invalid))
    todo = most_rollouts = 0
    for ex in _shard_examples(input_path, job, label, shard, RowLog(skip_invalid=job.skip_invalid)):
        if ex.meta["id"] in done_ids:
            result.already_done += 1
        else:
            todo += 1
            # at most: fewer with shared prefixes and early stops, none for reference labels
            most_rollouts += (len(ex.steps) - 1) * label.rollouts * (label.method != "reference")
    labeller: BatchLabeller = {
        "binary": partial(binary_label_batch, trust_final_answer=label.trust_final_answer),
        "reference": partial(reference_label_batch, reference_key=label.reference_key),
    }.get(label.method, partial(mc_label_batch, early_stop=label.early_stop))
    report, start = result.report, time.monotonic()
    jsonl.append_row(runs_path(out), {"event": "start", "time": time.time(), "settings": settings}, sync=True)
    bar = Progress(todo, "prm label", "ex", enabled=job.progress)
    try:
        with open(out, "a", encoding="utf-8") as fh:
            for chunk in batched(_shard_examples(input_path, job, label, shard, result.invalid), job.chunk_size):
                if all(ex.meta["id"] in done_ids for ex in chunk):
                    continue
                bank = RolloutBank(completer, label.rollouts, label.seed, label.answer_key, few_shot, report)

                def done(i: int, labelled: StepwiseExample | None, chunk: list[StepwiseExample] = chunk) -> None:
                    if chunk[i].meta["id"] in done_ids:  # written by an earlier run: relabelled for exactness only
                        return
                    report.count(labelled)
                    if labelled is not None:
                        jsonl.append_row(fh, labelled.to_json(), sync=True)
                        result.written += 1
                    elapsed = max(time.monotonic() - start, 1e-9)
                    bar.update(1, rollouts=f"{report.rollouts}/<={most_rollouts}", **{
                        "rollouts/s": rate(report.rollouts / elapsed),
                        "success": f"{report.successes / max(report.rollouts, 1):.1%}"})

                labeller(chunk, bank, done)
    finally:
        bar.close()
        report.seconds = time.monotonic() - start
        stats = getattr(completer, "stats", None)
        report.completer = stats.to_json() if stats is not None else {}
    jsonl.append_row(runs_path(out), {"event": "end", "time": time.time(), "result": result.to_json()}, sync=True)
    return result


def _shard_examples(input_path: str | Path, job: LabelJobConfig, label: LabelConfig, shard: tuple[int, int],
                    log: RowLog) -> Iterator[StepwiseExample]:
    """This shard's examples, in input order, each with its id in ``meta.id``."""
    index, count = shard
    seen: set[str] = set()
    for ex in formats.read(job.input_format, input_path, log):
        if label.answer_key not in ex.meta:
            log.bad_row(f"{ex.origin}: no meta['{label.answer_key}'] (the gold answer rollouts are checked against); "
                        "add it, or name the key holding it with --answer-key")
            continue
        if label.method == "reference" and not ex.meta.get(label.reference_key):
            log.bad_row(f"{ex.origin}: no meta['{label.reference_key}'] (the reference solution --method reference "
                        "checks steps against); add it, or name the key holding it with --reference-key")
            continue
        given = ex.meta.get("id")
        if given is not None:
            key = str(given)
            if key in seen:
                raise DataError(f"{ex.origin}: meta.id {key!r} appears twice in the input; ids must be unique, since "
                                "a rerun skips the examples whose ids are already in OUTPUT")
        else:
            base = "h" + _digest(ex.prompt + "\x1e" + "\x1f".join(ex.steps)).hex()[:16]
            key, n = base, 1
            while key in seen:
                n += 1
                key = f"{base}#{n}"
            ex.meta = {"id": key, **ex.meta}
        seen.add(key)
        problem = str(ex.meta.get("problem_id", key))
        if int.from_bytes(_digest(problem)[:8], "big") % count == index:
            yield ex


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _resume(out: Path, settings: dict[str, Any]) -> set[str]:
    """Ids already in OUTPUT, after cutting a partly written last line; checks the settings it was started with."""
    runs = runs_path(out)
    if not out.exists() or out.stat().st_size == 0:
        runs.unlink(missing_ok=True)  # a run log without rows describes nothing left to resume
        return set()
    dropped = jsonl.cut_torn_tail(out)
    if dropped:
        log.warning("dropped a partly written last row of %s (%d bytes; the run writing it was killed); it is "
                    "labelled again", out, dropped)
    started = next((r["settings"] for _, r in jsonl.read_rows(runs, tolerant=True) if r.get("event") == "start"),
                   None)
    if started is None:
        log.warning("%s has no run log (%s); resuming without checking that it was labelled with the same settings",
                    out, runs.name)
    elif started != settings:
        then, now = _flat(started), _flat(settings)
        diff = [f"{k} {_show(then.get(k))} then, {_show(now.get(k))} now"
                for k in sorted(set(then) | set(now)) if then.get(k) != now.get(k)]
        raise DataError(f"{out} was started with other settings ({'; '.join(diff)}); rerun with the same flags "
                        "to resume it, or write to a new OUTPUT")
    ids: set[str] = set()
    with open(out, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                ids.add(str(json.loads(line)["meta"]["id"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataError(f"{out}, line {lineno}: not a row written by prm label (no JSON object with "
                                "meta.id); move the file away or fix that line") from None
    return ids


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as {"label.rollouts": 8, ...}, so a mismatch names the setting."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."
