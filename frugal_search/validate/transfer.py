"""Transfer: does a split found on the proxy hold on the model the user trains?

Three sets of runs on a *target* model (another ``ModelSpec``: a wider and deeper sibling, the user's
model), at the proxy's token budget (or ``factor`` times it):

* the **check**: the study's front and a spread of other finished trials (the fidelity check's
  selection, :func:`~frugal_search.validate.selection.select_for_fidelity`) plus every baseline, each
  trained as found under every lr transfer rule of ``lr_rules`` (``none``: the proxy's lrs;
  ``width``: :mod:`frugal_search.partition.lr_transfer`); their target ranking is compared with the
  proxy's;
* the **confirmation**: the ``top_k`` best searched partitions of the front and every baseline, each
  trained with its lr times every point of ``lr_multipliers`` (a short sweep around the transferred
  lr, under every rule of ``confirm_rules``); the best point of each is its confirmed run;
* the **seeds**: once the sweep is complete, each confirmed run again with ``seeds`` more seeds, so
  the recommendation is compared with every baseline by its mean and spread, not by one draw.

Every run is a trial of a second Optuna study, ``<study>-transfer``, in the study's own storage
(values: target loss and state MiB, as the search's; attributes ``source_trial``, ``lr_rule``,
``lr_multiplier``, ``target_model``, ``run_key`` and the ``split`` that ran, carrying the confirmed
lr and rule), told as soon as it ends: a killed command resumes where it stopped, and
``frugal-search export --name <study>-transfer --best`` exports a confirmed run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from frugal_search.search import TransferSection
from frugal_search.search import transfer_study_name  # noqa: F401  (re-exported: the storage module names it)
from frugal_search.validate._pool import run_each
from frugal_search.validate.check import candidates_of, report_picks
from frugal_search.validate.selection import select_for_fidelity
from frugal_search.validate.store import split_fingerprint

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class TransferPlan(TransferSection):
    """Which runs the transfer check and confirmation make on the target model: the study file's
    ``[transfer]`` section (the target ``model``, ``top``, ``top_k``, ``lr_rules``, ``lr_multipliers``,
    ``confirm_rules``, ``seeds``, each checked there) plus the command's own settings below.

    Build it from a section with :meth:`from_section` (the command line's values replace the file's).
    """

    factor: int = 1  # target runs take factor x the proxy's steps
    seed: int = 0
    trials: tuple[int, ...] | None = None  # check these trial numbers instead of the selection
    device: str | None = None  # None: the study's [proxy] device

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.factor, int) or isinstance(self.factor, bool) or self.factor < 1:
            raise ValueError(f"factor must be an integer >= 1, got {self.factor!r}")

    @classmethod
    def from_section(cls, section: TransferSection, **changes: Any) -> TransferPlan:
        """The plan of ``section`` (a study file's ``[transfer]``) with ``changes`` (any field's value)."""
        values = {item.name: getattr(section, item.name) for item in dataclasses.fields(TransferSection)}
        return cls(**{**values, **changes})


@dataclass(frozen=True)
class TransferRun:
    """One planned target run: a source trial under an lr rule and multiplier, with one seed."""

    source_trial: int
    lr_rule: str
    lr_multiplier: float
    purpose: str  # "check", "confirm" or "seed" (a run may serve both of the first; the first planned names it)
    seed: int = 0

    @property
    def point(self) -> tuple[int, str, float]:
        """``(source trial, lr rule, multiplier)``: what the run trains, whatever its seed."""
        return (self.source_trial, self.lr_rule, self.lr_multiplier)


@dataclass(frozen=True)
class TransferResults:
    """What the transfer report reads: the source trials and the target losses of every run."""

    study: str
    proxy_loss: dict[int, float]
    state_mib: dict[int, float]
    description: dict[int, str]
    baselines: dict[int, str]  # source trial -> baseline name
    checked: list[int]  # check set, front first
    front: list[int]  # the check's front picks
    confirmed: list[int]  # confirmation set
    losses: dict[tuple[int, str, float], float]  # (trial, rule, multiplier) -> target loss, +inf diverged
    # the same key -> the losses of every seed that ran (the first is ``losses``'), for confirmed runs
    seed_losses: dict[tuple[int, str, float], tuple[float, ...]]
    transfer_trials: dict[tuple[int, str, float], int]  # the same key -> trial number in the transfer study
    settings: dict[str, Any] = field(default_factory=dict)


def model_fingerprint(model: Any) -> str:
    """Return a short digest of a target ``ModelSpec`` (source and overrides)."""
    text = json.dumps(model.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def transfer_run_key(run: TransferRun, *, steps: int, model: Any, split: dict[str, Any]) -> str:
    """Return the key of one target run: what it trained, on which model, for how long.

    The split's fingerprint is part of it, so a study run again (same numbers, other partitions)
    never reuses a stored run.
    """
    return (
        f"trial-{run.source_trial}/rule-{run.lr_rule}/lr-x{run.lr_multiplier:g}/steps-{steps}/seed-{run.seed}"
        f"/model-{model_fingerprint(model)}/split-{split_fingerprint(split)}"
    )


def plan_runs(candidates: Sequence[Any], baselines: dict[int, str], plan: TransferPlan) -> tuple[
    list[int], list[int], list[int], list[TransferRun]
]:
    """Return ``(checked, front, confirmed, runs)`` for finished ``candidates`` of a study.

    ``baselines`` maps the trial numbers of baseline trials to their names. The check set is
    ``plan.trials`` or the fidelity selection plus every baseline; the confirmation set is the
    ``top_k`` searched trials of the front with the lowest proxy loss plus every baseline.
    """
    numbers = {c.number for c in candidates}
    if plan.trials is not None:
        unknown = sorted(set(plan.trials) - numbers)
        if unknown:
            raise ValueError(
                f"trials {unknown} are not finished feasible trials of the study; pick among {sorted(numbers)}"
            )
        on_front = set(_front_numbers(candidates))
        front = [n for n in plan.trials if n in on_front]
        others = [n for n in plan.trials if n not in on_front]
    else:
        front, others = select_for_fidelity(candidates, top=plan.top)
    checked = list(dict.fromkeys([*front, *others, *sorted(n for n in baselines if n in numbers)]))
    by_loss = sorted((c for c in candidates if c.number not in baselines), key=lambda c: (c.proxy_loss, c.number))
    searched_front = [c.number for c in by_loss if c.number in set(_front_numbers(candidates))]
    confirmed = (
        list(dict.fromkeys([*searched_front[: plan.top_k], *sorted(n for n in baselines if n in numbers)]))
        if plan.top_k > 0
        else []
    )
    runs: dict[tuple[int, str, float], TransferRun] = {}
    for number in checked:
        for rule in plan.lr_rules:
            runs.setdefault((number, rule, 1.0), TransferRun(number, rule, 1.0, "check", plan.seed))
    for number in confirmed:
        for rule in plan.confirm_rules:
            for multiplier in plan.lr_multipliers:
                runs.setdefault((number, rule, multiplier), TransferRun(number, rule, multiplier, "confirm", plan.seed))
    return checked, front, confirmed, list(runs.values())


def _front_numbers(candidates: Sequence[Any]) -> list[int]:
    from frugal_search.search import pareto_front_indices

    indices = pareto_front_indices([(c.proxy_loss, c.state_mib) for c in candidates])
    return [candidates[i].number for i in indices]


def run_partition(partition: Any, run: TransferRun, proxy: Any) -> Any:
    """Return ``partition`` as a target run trains it: the run's rule on ``proxy``'s widths, lr x multiplier."""
    recorded = partition.with_base_widths(proxy) if run.lr_rule == "width" else partition
    return recorded.replace(lr_transfer=run.lr_rule, lr=partition.settings.lr * run.lr_multiplier)


def run_transfer(
    study_file: Any,
    *,
    plan: TransferPlan,
    storage: str | None = None,
    name: str | None = None,
    on_run: Callable[[str, dict[str, Any]], None] | None = None,
    max_runs: int | None = None,
    runner: Callable[..., dict[str, Any] | None] | None = None,
    workers: int = 1,
) -> TransferResults:
    """Make the planned target runs still missing from ``<study>-transfer`` and return every result.

    ``study_file`` is the study TOML or its loaded ``StudyConfig`` (read once by the caller);
    ``storage`` and ``name`` override its values.

    A run is told to the transfer study as soon as it ends; a trial left RUNNING by a killed command
    is failed and run again. ``max_runs`` stops after that many new runs (tests, partial progress).
    ``workers`` > 1 makes that many runs at once, each in its own process with one torch thread.
    ``runner(model, data, partition, budget, device, seed)`` makes one run (default: a proxy run on
    the target) and returns the figures :func:`target_run` returns, or None to leave the run out
    for now (runs made elsewhere can be fed in this way). Raises ``ValueError`` when the study has
    fewer than two finished feasible trials.
    """
    from frugal_search.partition import Partition
    from frugal_search.proxy import resolve_device
    from frugal_search.report import model_on_meta
    from frugal_search.search import StudyConfig, first_line, open_existing_study, open_transfer_study

    try:  # before any storage is opened
        target_meta = model_on_meta(plan.model, seed=plan.seed)
    except Exception as error:  # a bad override or factory may raise anything: say which model
        raise ValueError(f"the target model {plan.model.source!r} cannot be built: {first_line(error)}") from None
    opened = open_existing_study(study_file, storage=storage, name=name)
    config, study = opened.config, opened.study
    if isinstance(study_file, StudyConfig):
        study_file = study_file.path  # the report's command line names the file
    candidates, baselines = _with_best_baseline_runs(candidates_of(study), study)
    if len(candidates) < 2:
        raise ValueError(
            f"study {study.study_name!r} has {len(candidates)} finished feasible trials; the transfer check "
            "needs at least 2 (run the search first: frugal-search run <study.toml>)"
        )
    checked, front, confirmed, runs = plan_runs(candidates, baselines, plan)
    proxy_budget = config.proxy.budget()
    budget = proxy_budget.scaled(plan.factor)
    proxy_model = model_on_meta(config.model, seed=config.study.seed)
    device = resolve_device(plan.device or config.proxy.device)  # once, before any run
    transfer = open_transfer_study(config)  # <study>-transfer in the study's storage
    made = 0

    def make(planned: list[TransferRun]) -> dict[TransferRun, str]:
        """Make the runs of ``planned`` not yet stored (up to ``max_runs`` in all); return every run's key."""
        nonlocal made
        done = _finished_runs(transfer)
        splits = {
            run: run_partition(Partition.from_dict(study.trials[run.source_trial].user_attrs["split"]), run, proxy_model)
            for run in planned
        }
        keys = {run: transfer_run_key(run, steps=budget.total_steps, model=plan.model, split=splits[run].to_dict())
                for run in planned}
        todo = [run for run in planned if keys[run] not in done]
        logger.info("transfer of %r to %s: %d runs planned, %d stored, %d to do",
                    study.study_name, plan.model.source, len(planned), len(planned) - len(todo), len(todo))
        if max_runs is not None:
            todo = todo[: max(0, max_runs - made)]

        def tell(run: TransferRun, result: dict[str, Any] | None) -> None:
            nonlocal made
            if result is None:
                return
            made += 1
            _tell(transfer, run, keys[run], splits[run], study.trials[run.source_trial], result, plan, target_meta)
            if on_run is not None:
                on_run(keys[run], result)

        jobs = [(run, (plan.model, config.data, splits[run], budget, device, run.seed)) for run in todo]
        # a runner passed in (tests, runs made elsewhere) is called here; the proxy runs may go to processes
        run_each(runner or target_run, jobs, workers=1 if runner is not None else workers, on_result=tell)
        return keys

    keys = make(runs)
    first = _losses_of(_finished_runs(transfer), keys)
    seed_runs = plan_seed_runs(first, confirmed, plan) if all(run.point in first for run in runs) else []
    if seed_runs:
        keys.update(make(seed_runs))
    runs = runs + seed_runs
    return _collect(study, transfer, candidates, baselines, checked, front, confirmed, runs, keys, plan, budget,
                    proxy_budget.total_steps, storage=storage, name=name, study_file=study_file)


def _with_best_baseline_runs(candidates: list[Any], study: Any) -> tuple[list[Any], dict[int, str]]:
    """``candidates`` with each baseline kept at its best run of its lr grid (the run the report
    compares with; its other lrs are left out), and those runs' names by trial number.

    A method baseline (LoRA, a competitor optimizer: no partition, so no split to carry over by an lr
    rule) is left out, and the log says so."""
    from frugal_search.proxy import method_of

    numbers = {c.number for c in candidates}
    picks = {number: name for number, name in report_picks(study, None)[1].items() if number in numbers}
    methods = {n: name for n, name in picks.items() if method_of(study.trials[n].user_attrs.get("split") or {})}
    if methods:
        logger.info("the transfer check leaves out the method baselines %s: they have no partition to transfer",
                    ", ".join(sorted(methods.values())))
    baselines = {n: name for n, name in picks.items() if n not in methods}
    kept = [c for c in candidates if c.number in baselines or not study.trials[c.number].user_attrs.get("baseline")]
    return kept, baselines


def plan_seed_runs(losses: dict[tuple[int, str, float], float], confirmed: Sequence[int],
                   plan: TransferPlan) -> list[TransferRun]:
    """The extra seeds of each confirmed partition at its best (rule, multiplier) of ``losses``.

    A partition whose every run diverged gets none (there is nothing to confirm).
    """
    runs = []
    for number in confirmed:
        points = {point: loss for point, loss in losses.items() if point[0] == number}
        if not points:
            continue
        best = min(points, key=lambda point: (points[point], point[1], point[2]))
        if not math.isfinite(points[best]):
            continue
        runs += [TransferRun(*best, "seed", plan.seed + offset) for offset in range(1, plan.seeds + 1)]
    return runs


def _tell(transfer: Any, run: TransferRun, key: str, partition: Any, source: Any, result: dict[str, Any],
          plan: TransferPlan, target_meta: Any) -> None:
    """Store one finished target run as a trial of the transfer study."""
    import optuna

    from frugal_search.partition import quiet_unmatched_rules

    with warnings.catch_warnings():
        # the storage's heartbeat serves the search's workers; a killed run is failed on resume instead
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        trial = transfer.ask()
    attrs = {
        "source_trial": run.source_trial, "lr_rule": run.lr_rule, "lr_multiplier": run.lr_multiplier,
        "purpose": run.purpose, "seed": run.seed, "target_model": plan.model.to_dict(), "run_key": key,
        "split": partition.to_dict(), "baseline": source.user_attrs.get("baseline"),
        "summary": source.user_attrs.get("summary"), "proxy_eval_loss": float(source.values[0]),
    }
    with quiet_unmatched_rules():  # as in the run itself (target_run): a sampled split's catch-all rules
        attrs["state_bytes"] = int(partition.state_bytes(target_meta))
    for name, value in {**attrs, **result}.items():
        trial.set_user_attr(name, value)
    if result["outcome"] == "ok":
        transfer.tell(trial, [result["eval_loss"], attrs["state_bytes"] / 2**20])
    else:
        transfer.tell(trial, state=optuna.trial.TrialState.PRUNED)


def _losses_of(done: dict[str, Any], keys: dict[TransferRun, str]) -> dict[tuple[int, str, float], float]:
    """The target loss of each stored run of ``keys`` by its point (+inf: diverged)."""
    losses = {}
    for run, key in keys.items():
        frozen = done.get(key)
        if frozen is not None:
            loss = frozen.user_attrs.get("eval_loss")
            losses[run.point] = math.inf if loss is None else float(loss)
    return losses


def _finished_runs(transfer: Any) -> dict[str, Any]:
    """Return ``{run_key: trial}`` of the told runs; fail the trials a killed command left RUNNING."""
    import optuna

    finished = {}
    for frozen in transfer.get_trials(deepcopy=False):
        if frozen.state == optuna.trial.TrialState.RUNNING:
            logger.info("transfer trial %d was left running (killed?); failing it to run again", frozen.number)
            transfer.tell(frozen.number, state=optuna.trial.TrialState.FAIL)
        elif frozen.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
            finished[frozen.user_attrs.get("run_key")] = frozen
    return finished


def target_run(model: Any, data: Any, partition: Any, budget: Any, device: torch.device, seed: int) -> dict[str, Any]:
    """One run on the target; the figures a transfer trial keeps (JSON-safe: a diverged loss is None).

    ``outcome`` (``ok`` | ``diverged``), ``eval_loss`` (None when diverged), ``reason``, ``steps``,
    ``wall_s``, ``tokens_per_s``.
    """
    from frugal_search.partition import quiet_unmatched_rules
    from frugal_search.proxy import run_proxy

    with quiet_unmatched_rules():  # sampled partitions carry rules a model may not need ("first 0 layers stateful")
        result = run_proxy(model, data, partition, budget, device=device, seed=seed)
    finite = result.eval_loss is not None and math.isfinite(result.eval_loss)
    return {
        "outcome": "ok" if finite and not result.diverged else "diverged",
        "eval_loss": float(result.eval_loss) if finite and not result.diverged else None,
        "reason": result.reason,
        "steps": result.steps,
        "wall_s": result.wall_s,
        "tokens_per_s": result.tokens_per_s,
    }


def _collect(study, transfer, candidates, baselines, checked, front, confirmed, runs, keys, plan, budget,
             proxy_steps, *, storage, name, study_file) -> TransferResults:
    import shlex

    done = _finished_runs(transfer)
    losses, numbers, seed_losses = {}, {}, {}
    for run in runs:
        frozen = done.get(keys[run])
        if frozen is None:
            continue
        loss = frozen.user_attrs.get("eval_loss")
        loss = math.inf if loss is None else float(loss)
        if run.seed == plan.seed:
            losses[run.point] = loss
            numbers[run.point] = frozen.number
        else:
            seed_losses.setdefault(run.point, []).append(loss)
    seed_losses = {point: (losses[point], *extra) for point, extra in seed_losses.items() if point in losses}
    by_number = {c.number: c for c in candidates}
    involved = sorted(set(checked) | set(confirmed))
    overrides = " ".join(f"--model-override {shlex.quote(f'{k}={v}')}" for k, v in plan.model.overrides.items())
    command = (
        f"frugal-search transfer {shlex.quote(str(study_file))} --model {shlex.quote(str(plan.model.source))} "
        f"{overrides} --top {plan.top} --top-k {plan.top_k} --lr-rules {','.join(plan.lr_rules)} "
        f"--lr-multipliers {','.join(f'{m:g}' for m in plan.lr_multipliers)} --confirm-rules {','.join(plan.confirm_rules)} "
        f"--factor {plan.factor}"
        + f" --seeds {plan.seeds}"
        + (f" --trials {','.join(str(n) for n in plan.trials)}" if plan.trials is not None else "")
        + (f" --storage {shlex.quote(storage)}" if storage else "")
        + (f" --name {shlex.quote(name)}" if name else "")
    )
    return TransferResults(
        study=study.study_name,
        proxy_loss={n: by_number[n].proxy_loss for n in involved},
        state_mib={n: by_number[n].state_mib for n in involved},
        description={n: str(study.trials[n].user_attrs.get("baseline") or study.trials[n].user_attrs.get("summary", ""))
                     for n in involved},
        baselines={n: b for n, b in baselines.items() if n in involved},
        checked=checked,
        front=front,
        confirmed=confirmed,
        losses=losses,
        seed_losses=seed_losses,
        transfer_trials=numbers,
        settings={
            "study": study.study_name,
            "transfer_study": transfer.study_name,
            "target": plan.model.to_dict(),
            "proxy_steps": proxy_steps,
            "target_steps": budget.total_steps,
            "seed": plan.seed,
            "seeds": plan.seeds,
            "lr_rules": list(plan.lr_rules),
            "lr_multipliers": list(plan.lr_multipliers),
            "confirm_rules": list(plan.confirm_rules),
            "command": command,
        },
    )
