"""Study files: TOML -> typed, frozen config objects, with every error naming file, key and remedy.

A study file has the sections ``[study]``, ``[task]``, ``[model]``, ``[data]``, ``[proxy]``,
``[space]``, ``[search]`` and ``[transfer]`` (see the README section "Running a search" for the full
reference). Everything is checked by :func:`load_study_config` before any storage is opened, so a bad
file never leaves a half-created study behind.

The file is parsed once, here: the config holds the proxy stage's own objects (``[model]`` a
``ModelSpec``, ``[data]`` a ``DataSpec`` or ``LabelledDataSpec``, ``[proxy]``'s budget a
``ProxyBudget``, ``[task]`` a ``TaskSpec``, ``[transfer] model`` a ``ModelSpec``), built and checked
when the file is read; command-line overrides make a new frozen config
(:meth:`StudyConfig.with_overrides`). Every later stage takes these objects and never re-reads a table.
The sections' records (``StudySection``, ``ProxySection``, ...) live in ``search.sections`` and are
re-exported here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from frugal_search.optimizer import check_known_keys
from frugal_search.proxy import DataSpec, LabelledDataSpec, ModelSpec, ProxyBudget, TaskSpec, parse_device
from frugal_search.search.sections import (  # the sections' records, re-exported here (their first home)
    BASELINE_NAMES,
    BUDGET_KEYS,
    DEFAULT_OBJECTIVES,
    DEFAULT_PROXY_STEPS,
    FIDELITIES,
    LR_RULES,
    MEMORY_OBJECTIVES,
    OBJECTIVE_DIRECTIONS,
    SAMPLERS,
    TASK_KINDS,
    TASK_METRICS,  # noqa: F401  (re-exported)
    ProxySection,
    SearchSection,
    StudySection,
    TaskSection,
    TransferSection,
)
from frugal_search.search.space import SearchSpace, SpaceError, parse_space
from frugal_search.units import parse_bytes

class StudyConfigError(ValueError):
    """A study file that cannot be used: the message names the file, the key and what is allowed."""


@dataclass(frozen=True)
class StudyConfig:
    """A whole study file, checked. ``path`` is the file it was read from (None when built in code)."""

    study: StudySection
    model: ModelSpec  # ``[model]``: the proxy stage's ModelSpec (source, overrides)
    data: DataSpec | LabelledDataSpec  # ``[data]``: a LabelledDataSpec for a classification task
    proxy: ProxySection
    space: SearchSpace
    search: SearchSection = field(default_factory=SearchSection)
    path: Path | None = None
    transfer: TransferSection | None = None  # ``[transfer]``, when the file names a target model
    task: TaskSpec = field(default_factory=TaskSpec)
    # the keys the file gave in ``[model]``, ``[data]`` and ``[proxy]`` (the settings :meth:`to_dict` lists)
    file_keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)

    @property
    def is_classification(self) -> bool:
        """Whether proxy runs train a sequence classifier on labelled ``[data]``."""
        return self.task.kind == "sequence-classification"

    @property
    def metric_names(self) -> list[str]:
        """The study's objective names, in the order of a trial's values (``[study] objectives``)."""
        return list(self.study.objectives)

    @property
    def directions(self) -> list[str]:
        """``"minimize"`` / ``"maximize"`` for each of :attr:`metric_names`."""
        return [OBJECTIVE_DIRECTIONS[name] for name in self.study.objectives]

    def model_spec(self) -> ModelSpec:
        """The proxy stage's ``ModelSpec`` of ``[model]`` (:attr:`model`, built when the file was read)."""
        return self.model

    def data_spec(self) -> DataSpec | LabelledDataSpec:
        """The proxy stage's ``DataSpec`` of ``[data]``, or its ``LabelledDataSpec`` for a classification
        task (:attr:`data`, built when the file was read)."""
        return self.data

    def to_dict(self) -> dict[str, Any]:
        """The settings of each section as the report's settings table lists them: the sections'
        fields, and of ``[model]``, ``[data]`` and ``[proxy]``'s budget the keys the file gave (and
        ``steps``); the specs themselves are :attr:`model`, :attr:`data` and ``proxy.run_budget``."""
        given = {section: set(self.file_keys.get(section, ())) for section in ("model", "data", "proxy")}

        def spec_table(spec: Any, section: str) -> dict[str, Any]:
            return {item.name: getattr(spec, item.name) for item in dataclasses.fields(spec) if item.name in given[section]}

        budget_keys = [item.name for item in dataclasses.fields(ProxyBudget) if item.name == "lr" or item.name in BUDGET_KEYS]
        proxy = {
            key: self.proxy.lr if key == "lr" else getattr(self.proxy.run_budget, key)
            for key in budget_keys
            if key == "steps" or key in given["proxy"]
        }
        proxy.update(device=str(self.proxy.device), threads=self.proxy.threads, nproc=self.proxy.nproc)
        return {
            "study": self.study,
            "model": spec_table(self.model, "model"),
            "data": spec_table(self.data, "data"),
            "proxy": proxy,
            "space": self.space,
            "search": self.search,
            "path": self.path,
            "transfer": self.transfer,
            "task": self.task,
        }

    def with_overrides(
        self,
        *,
        trials: int | None = None,
        steps: int | None = None,
        storage: str | None = None,
        name: str | None = None,
        device: str | torch.device | None = None,
    ) -> StudyConfig:
        """Return a copy with command-line overrides applied and checked like the file's values
        (``self`` itself when every override is None)."""
        if all(value is None for value in (trials, steps, storage, name, device)):
            return self
        where = str(self.path) if self.path else "<overrides>"
        study_changes: dict[str, Any] = {}
        if trials is not None:
            study_changes["trials"] = _positive_int(trials, where, "study", "trials")
        if storage is not None:
            study_changes["storage"] = normalize_storage(storage, base_dir=Path.cwd(), where=where)
        if name is not None:
            if not name.strip():
                raise StudyConfigError(f"{where}: [study] name: must not be empty")
            study_changes["name"] = name
        proxy_changes: dict[str, Any] = {}
        if steps is not None:
            steps = _positive_int(steps, where, "proxy", "steps")
            proxy_changes["run_budget"] = dataclasses.replace(self.proxy.run_budget, steps=steps)
        if device is not None:
            proxy_changes["device"] = _device(device, where)  # this machine's having it: the set-up checks
        return dataclasses.replace(
            self,
            study=dataclasses.replace(self.study, **study_changes),
            proxy=dataclasses.replace(self.proxy, **proxy_changes),
        )


_SECTIONS = ("study", "model", "data", "proxy", "space", "search", "transfer", "task")


def load_study_config(path: str | Path) -> StudyConfig:
    """Read and check the study file at ``path``.

    Raises :class:`StudyConfigError` (a ``ValueError``) for a missing file, a TOML syntax error,
    an unknown section or key, a value of the wrong type or out of range, and a space that varies
    nothing. Nothing is written anywhere.
    """
    path = Path(path)
    where = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudyConfigError(f"{where}: no such study file; pass the path of a .toml study file") from None
    except tomllib.TOMLDecodeError as error:
        raise StudyConfigError(f"{where}: not valid TOML: {error}") from None
    return study_config_from_dict(raw, base_dir=path.resolve().parent, where=where, path=path)


def study_config_from_dict(
    raw: Mapping[str, Any], *, base_dir: Path, where: str = "<study>", path: Path | None = None
) -> StudyConfig:
    """Check a parsed study file (``raw``); ``base_dir`` is where the default storage goes."""
    _reject_unknown(raw, _SECTIONS, where, section=None)
    for section in _SECTIONS:
        if section in raw and not isinstance(raw[section], dict):
            raise StudyConfigError(f"{where}: [{section}] must be a table, got {raw[section]!r}")
    task = _read_task(dict(raw.get("task", {})), where)
    study = _read_study(dict(raw.get("study", {})), base_dir=base_dir, where=where, default_name=path, task=task)
    proxy = _read_proxy(dict(raw.get("proxy", {})), where)
    search = _read_search(dict(raw.get("search", {})), where)
    if search.fidelity != "none" and study.objectives[0] != "eval_loss":
        raise StudyConfigError(
            f"{where}: [search] fidelity: successive halving ranks trials by eval loss at each rung, so it needs "
            f"[study] objectives = [\"eval_loss\", ...]; got {list(study.objectives)}: set fidelity = \"none\""
        )
    space_table = raw.get("space")
    if not space_table:
        raise StudyConfigError(
            f"{where}: [space] is missing or empty; list at least one dimension to search, "
            f"e.g. density = [0.05, 0.5] (see frugal_search.search.space for all dimensions)"
        )
    try:
        space = parse_space(dict(space_table), default_lr=proxy.lr)
    except SpaceError as error:
        raise StudyConfigError(f"{where}: [space] {error}") from None
    if not space.varying:
        raise StudyConfigError(
            f"{where}: [space] varies nothing (every dimension is fixed); give at least one "
            f"dimension a range [low, high] or a list of choices"
        )
    if proxy.lr is not None and "lr" in space_table:
        raise StudyConfigError(
            f"{where}: [proxy] lr and [space] lr are both set; keep one (the [space] one to search it)"
        )
    model = _build_spec("model", dict(raw.get("model", {})), where)
    data = _build_spec("data", dict(raw.get("data", {})), where, labelled=task.kind == "sequence-classification")
    _check_nproc(proxy, data, search, where)
    transfer = _read_transfer(dict(raw["transfer"]), where) if "transfer" in raw else None
    if search.target_rung and transfer is None:
        raise StudyConfigError(
            f"{where}: [search] target_rung: the rung trains on [transfer] model, and the file has no [transfer]; "
            "add one, e.g. [transfer] model = { source = \"tiny-llama\", overrides = { hidden_size = 256 } }"
        )
    return StudyConfig(
        study=study,
        model=model,
        data=data,
        proxy=proxy,
        space=space,
        search=search,
        path=path,
        transfer=transfer,
        task=task,
        file_keys={section: tuple(raw.get(section, {})) for section in ("model", "data", "proxy")},
    )


def normalize_storage(storage: str, *, base_dir: Path, where: str) -> str:
    """Return ``storage`` as a URL :func:`~frugal_search.search.storage.open_storage` reads.

    A ``*.log`` / ``*.jsonl`` path or ``journal:///path`` becomes ``journal:///<absolute path>``
    (relative paths are relative to ``base_dir``); database URLs are kept as Optuna reads them.
    """
    if not isinstance(storage, str) or not storage.strip():
        raise StudyConfigError(f"{where}: [study] storage: expected an Optuna storage URL, got {storage!r}")
    if storage.startswith("journal://"):
        # journal:///abs/path.log is absolute; journal://rel/path.log is relative to base_dir
        journal_path = Path(storage[len("journal://") :])
        return f"journal://{(base_dir / journal_path).resolve()}"
    if "://" not in storage:
        if storage.endswith((".log", ".jsonl")):
            return f"journal://{(base_dir / storage).resolve()}"
        raise StudyConfigError(
            f"{where}: [study] storage: {storage!r} is neither a URL nor a journal file; write e.g. "
            f"{_STORAGE_EXAMPLES}"
        )
    _check_database_url(storage, where)
    return storage


_STORAGE_EXAMPLES = "'sqlite:///studies/tiny.db', 'postgresql+psycopg2://user@host/db' or 'studies/tiny.log'"


def _check_database_url(url: str, where: str) -> None:
    """Fail now, in words, on a database URL SQLAlchemy cannot use: a malformed URL, an unknown
    database kind, or a driver that is not installed (e.g. psycopg2 for PostgreSQL)."""
    from sqlalchemy.engine import make_url

    try:
        dialect = make_url(url).get_dialect()
    except Exception as error:  # malformed URL or unknown database kind
        raise StudyConfigError(
            f"{where}: [study] storage: cannot use {url!r} ({error}); write e.g. {_STORAGE_EXAMPLES}"
        ) from error
    try:
        dialect.import_dbapi()
    except ImportError as error:
        raise StudyConfigError(
            f"{where}: [study] storage: the database driver for {url!r} is not installed ({error}); "
            f"install it (PostgreSQL: pip install -e '.[postgres]')"
        ) from error


def _read_task(table: dict[str, Any], where: str) -> TaskSection:
    allowed = [item.name for item in dataclasses.fields(TaskSection)]
    _reject_unknown(table, allowed, where, section="task")
    kind = table.get("kind", "causal-lm")
    if kind not in TASK_KINDS:
        raise StudyConfigError(f"{where}: [task] kind: {kind!r} is not allowed; allowed: {' | '.join(TASK_KINDS)}")
    return TaskSection(kind=kind)


def _read_objectives(value: Any, where: str, task: TaskSection) -> tuple[str, str]:
    example = f'objectives = ["{task.metrics[-1] if len(task.metrics) > 1 else task.metrics[0]}", "state_mib"]'
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(item, str) for item in value):
        raise StudyConfigError(
            f"{where}: [study] objectives: expected two names, a figure and a memory, e.g. {example}; got {value!r}"
        )
    figure, memory = value
    if figure not in task.metrics:
        raise StudyConfigError(
            f"{where}: [study] objectives: {figure!r} is not a figure of a {task.kind} task; allowed first: "
            f"{' | '.join(task.metrics)}"
        )
    if memory not in MEMORY_OBJECTIVES:
        raise StudyConfigError(
            f"{where}: [study] objectives: {memory!r} is not a memory objective; allowed second: "
            f"{' | '.join(MEMORY_OBJECTIVES)}"
        )
    return figure, memory


def _read_study(
    table: dict[str, Any], *, base_dir: Path, where: str, default_name: Path | None, task: TaskSection | None = None
) -> StudySection:
    task = task or TaskSection()
    allowed = [item.name for item in dataclasses.fields(StudySection)]
    _reject_unknown(table, allowed, where, section="study")
    name = table.get("name", default_name.stem if default_name else None)
    if not isinstance(name, str) or not name.strip():
        raise StudyConfigError(f"{where}: [study] name: expected a non-empty string, got {name!r}")
    if "storage" in table:
        storage = normalize_storage(table["storage"], base_dir=Path.cwd(), where=where)
    else:
        # The default lies next to the study file, so the same file finds the same study from any folder.
        storage = f"sqlite:///{(base_dir / f'{name}.db').resolve()}"
    sampler = table.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise StudyConfigError(
            f"{where}: [study] sampler: {sampler!r} is not allowed; allowed: {' | '.join(SAMPLERS)}"
        )
    budget = table.get("memory_budget")
    if budget is not None:
        try:
            budget = parse_bytes(budget)
        except ValueError as error:
            raise StudyConfigError(f"{where}: [study] memory_budget: {error}") from None
        if budget <= 0:
            raise StudyConfigError(
                f"{where}: [study] memory_budget: must be above 0, got {table['memory_budget']!r}"
            )
    baselines = table.get("baselines", [])
    if not isinstance(baselines, list) or not all(isinstance(item, str) for item in baselines):
        raise StudyConfigError(f"{where}: [study] baselines: expected a list of names, got {baselines!r}")
    for item in baselines:
        if item not in BASELINE_NAMES:
            raise StudyConfigError(
                f"{where}: [study] baselines: {item!r} is not a baseline; allowed: {' | '.join(BASELINE_NAMES)}"
            )
    if len(set(baselines)) != len(baselines):
        raise StudyConfigError(f"{where}: [study] baselines: a name is repeated in {baselines!r}")
    baseline_lrs = _positive_numbers(table, "baseline_lrs", where, example="[3e-4, 1e-3, 3e-3]")
    multipliers = _positive_numbers(table, "competitor_lr_multipliers", where, example="[0.33, 1, 3]")
    front_seeds = _int(table.get("front_seeds", 2), where, "study", "front_seeds")
    if front_seeds < 0:
        raise StudyConfigError(f"{where}: [study] front_seeds: expected an integer >= 0, got {front_seeds}")
    heartbeat = _positive_int(table.get("heartbeat_interval", 10), where, "study", "heartbeat_interval")
    grace = _positive_int(table.get("grace_period", max(60, 3 * heartbeat)), where, "study", "grace_period")
    if grace <= heartbeat:
        raise StudyConfigError(
            f"{where}: [study] grace_period ({grace}) must be above heartbeat_interval ({heartbeat}), "
            f"or live trials would be marked dead"
        )
    return StudySection(
        name=name,
        storage=storage,
        trials=_positive_int(table.get("trials", 40), where, "study", "trials"),
        sampler=sampler,
        seed=_int(table.get("seed", 0), where, "study", "seed"),
        memory_budget=budget,
        baselines=tuple(baselines),
        baseline_lrs=baseline_lrs,
        competitor_lr_multipliers=multipliers,
        front_seeds=front_seeds,
        objectives=_read_objectives(table.get("objectives", list(DEFAULT_OBJECTIVES)), where, task),
        heartbeat_interval=heartbeat,
        grace_period=grace,
    )


# How each budget key is read from TOML, from ProxyBudget's own annotations ("int | None", "float", ...).
_PROXY_INTS = tuple(
    item.name for item in dataclasses.fields(ProxyBudget) if item.name in BUDGET_KEYS and str(item.type).startswith("int")
)
_PROXY_FLOATS = (
    "lr",
    *(item.name for item in dataclasses.fields(ProxyBudget) if item.name in BUDGET_KEYS and str(item.type).startswith("float")),
)
_PROXY_KEYS = (*BUDGET_KEYS, *(item.name for item in dataclasses.fields(ProxySection) if item.name != "run_budget"))


def _positive_numbers(table: dict[str, Any], key: str, where: str, *, example: str) -> tuple[float, ...]:
    """``[study] key``: a list of finite numbers above 0 (empty when not given), as floats."""
    values = table.get(key, [])
    if not isinstance(values, list) or not all(_is_number(value) and math.isfinite(value) and value > 0 for value in values):
        raise StudyConfigError(f"{where}: [study] {key}: expected a list of positive numbers, e.g. {example}, got {values!r}")
    return tuple(float(value) for value in values)


def _device(device: Any, where: str) -> torch.device:
    if isinstance(device, (str, torch.device)):
        with contextlib.suppress(ValueError):
            return parse_device(device)
    raise StudyConfigError(f"{where}: [proxy] device: expected 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}")


def _read_proxy(table: dict[str, Any], where: str) -> ProxySection:
    _reject_unknown(table, _PROXY_KEYS, where, section="proxy")
    values: dict[str, Any] = {"steps": DEFAULT_PROXY_STEPS}
    for key in _PROXY_INTS:
        if key in table:
            values[key] = _int(table[key], where, "proxy", key)
    for key in _PROXY_FLOATS:
        if key in table:
            if not _is_number(table[key]):
                raise StudyConfigError(f"{where}: [proxy] {key}: expected a number, got {table[key]!r}")
            values[key] = float(table[key])
    lr = values.pop("lr", None)
    placement: dict[str, Any] = {}
    for key in ("threads", "nproc"):
        if key in table:
            placement[key] = _positive_int(table[key], where, "proxy", key)
    if "device" in table:
        placement["device"] = _device(table["device"], where)
    try:
        # the proxy stage's own range checks (of the lr too), now rather than in the first trial
        run_budget = ProxyBudget(**values)
        if lr is not None:
            dataclasses.replace(run_budget, lr=lr)
    except (TypeError, ValueError) as error:
        raise StudyConfigError(f"{where}: [proxy] {error}") from None
    proxy = ProxySection(run_budget=run_budget, lr=lr, **placement)
    if run_budget.batch_size % proxy.nproc:
        raise StudyConfigError(
            f"{where}: [proxy] nproc: the batch_size {run_budget.batch_size} (the global batch) does not split over "
            f"{proxy.nproc} ranks; use a batch_size that is a multiple of nproc"
        )
    return proxy


def _check_nproc(proxy: ProxySection, data: DataSpec | LabelledDataSpec, search: SearchSection, where: str) -> None:
    """What a multi-process proxy (``nproc`` > 1) does not run: classification, successive halving."""
    if proxy.nproc == 1:
        return
    from frugal_search.proxy import is_labelled_source

    source = data.source
    if isinstance(source, str) and is_labelled_source(source):
        raise StudyConfigError(
            f"{where}: [proxy] nproc: {proxy.nproc} ranks run causal-lm proxies only; [data] source {source!r} "
            "is a sequence-classification task, which runs with nproc = 1"
        )
    if search.fidelity != "none":
        raise StudyConfigError(
            f"{where}: [proxy] nproc: {proxy.nproc} ranks run whole proxy runs; [search] fidelity "
            f"{search.fidelity!r} needs nproc = 1 (allowed with nproc > 1: 'none')"
        )


def _read_search(table: dict[str, Any], where: str) -> SearchSection:
    allowed = [item.name for item in dataclasses.fields(SearchSection)]
    _reject_unknown(table, allowed, where, section="search")
    fidelity = table.get("fidelity", "none")
    if fidelity not in FIDELITIES:
        raise StudyConfigError(
            f"{where}: [search] fidelity: {fidelity!r} is not allowed; allowed: {' | '.join(FIDELITIES)}"
        )
    min_fraction = table.get("min_fraction", 0.25)
    if not _is_number(min_fraction) or not 0 < min_fraction < 1:
        raise StudyConfigError(
            f"{where}: [search] min_fraction: expected a number in (0, 1) (the share of the proxy steps "
            f"every trial runs), got {min_fraction!r}"
        )
    reduction = table.get("reduction_factor", 3)
    if not _is_number(reduction) or not reduction > 1:
        raise StudyConfigError(
            f"{where}: [search] reduction_factor: expected a number above 1, got {reduction!r}"
        )
    factor = _int(table.get("confirm_factor", 4), where, "search", "confirm_factor")
    if factor < 2:
        raise StudyConfigError(
            f"{where}: [search] confirm_factor: expected an integer >= 2 (times the proxy steps), got {factor}; "
            f"to pick at the proxy budget instead, set confirm_seeds = 0"
        )
    top = _positive_int(table.get("confirm_top", 5), where, "search", "confirm_top")
    seeds = _int(table.get("confirm_seeds", 3), where, "search", "confirm_seeds")
    if seeds < 0:
        raise StudyConfigError(
            f"{where}: [search] confirm_seeds: expected an integer >= 0 (0: no confirmation rung), got {seeds}"
        )
    target_rung = table.get("target_rung", False)
    if not isinstance(target_rung, bool):
        raise StudyConfigError(f"{where}: [search] target_rung: expected true or false, got {target_rung!r}")
    if target_rung and seeds == 0:
        raise StudyConfigError(
            f"{where}: [search] target_rung: the rung on the target model trains the confirmation rung's "
            "candidates, so it needs confirm_seeds >= 1; got confirm_seeds = 0"
        )
    return SearchSection(
        fidelity=fidelity,
        min_fraction=float(min_fraction),
        reduction_factor=reduction,
        confirm_factor=factor,
        confirm_top=top,
        confirm_seeds=seeds,
        target_rung=target_rung,
        target_factor=_positive_int(table.get("target_factor", 1), where, "search", "target_factor"),
    )


def _read_transfer(table: dict[str, Any], where: str) -> TransferSection:
    allowed = [item.name for item in dataclasses.fields(TransferSection)]
    _reject_unknown(table, allowed, where, section="transfer")
    model = table.get("model")
    if not isinstance(model, dict) or "source" not in model:
        raise StudyConfigError(
            f"{where}: [transfer] model: expected a table with a source, e.g. model = {{ source = \"tiny-llama\", "
            f"overrides = {{ hidden_size = 256 }} }}, got {model!r}"
        )
    values: dict[str, Any] = {"model": _build_spec("model", model, where)}
    for key in ("top", "top_k", "seeds"):
        if key in table:
            value = _int(table[key], where, "transfer", key)
            if value < (1 if key == "top" else 0):
                raise StudyConfigError(f"{where}: [transfer] {key}: expected an integer >= {1 if key == 'top' else 0}, "
                                       f"got {value!r}")
            values[key] = value
    rules = table.get("lr_rules", ["none", "width"])
    if not isinstance(rules, list) or not rules or any(r not in LR_RULES for r in rules) or len(set(rules)) < len(rules):
        raise StudyConfigError(f"{where}: [transfer] lr_rules: expected distinct names among {', '.join(LR_RULES)}, "
                               f"got {rules!r}")
    values["lr_rules"] = tuple(rules)
    multipliers = table.get("lr_multipliers", [0.5, 1.0, 2.0])
    if (
        not isinstance(multipliers, list) or not multipliers or len(set(multipliers)) < len(multipliers)
        or not all(_is_number(m) and m > 0 for m in multipliers)
    ):
        raise StudyConfigError(f"{where}: [transfer] lr_multipliers: expected distinct numbers > 0, e.g. "
                               f"[0.5, 1.0, 2.0], got {multipliers!r}")
    values["lr_multipliers"] = tuple(float(m) for m in multipliers)
    confirm = table.get("confirm_rules", ["width"])
    if not isinstance(confirm, list) or not confirm or any(r not in LR_RULES for r in confirm) or len(
        set(confirm)
    ) < len(confirm):
        raise StudyConfigError(f"{where}: [transfer] confirm_rules: {confirm!r} is not allowed; distinct names among "
                               f"{' | '.join(LR_RULES)}")
    values["confirm_rules"] = tuple(confirm)
    try:
        return TransferSection(**values)
    except (TypeError, ValueError) as error:
        raise StudyConfigError(f"{where}: [transfer] {error}") from None


def _build_spec(key: str, table: Mapping[str, Any], where: str, *, labelled: bool = False) -> Any:
    """The proxy stage's spec of a ``[model]`` or ``[data]`` table (``key``; ``[transfer] model`` is a
    ``[model]``): a ``ModelSpec``, a ``DataSpec``, or for a classification task (``labelled``) a
    ``LabelledDataSpec``, checked by the proxy stage now, before any storage is touched."""
    from frugal_search.search._proxy_bridge import (
        data_spec_from_table,
        labelled_data_spec_from_table,
        model_spec_from_table,
    )

    build = model_spec_from_table if key == "model" else labelled_data_spec_from_table if labelled else data_spec_from_table
    try:
        return build(table)
    except (TypeError, ValueError) as error:
        raise StudyConfigError(f"{where}: [{key}] {error}") from None


def _reject_unknown(table: Mapping[str, Any], allowed: Any, where: str, *, section: str | None) -> None:
    place = f"[{section}] " if section else ""
    what = "key" if section else "section"
    check_known_keys(table, allowed, what=what, where=f"{where}: {place}", error=StudyConfigError)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int(value: Any, where: str, section: str, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise StudyConfigError(f"{where}: [{section}] {key}: expected an integer, got {value!r}")
    return value


def _positive_int(value: Any, where: str, section: str, key: str) -> int:
    value = _int(value, where, section, key)
    if value < 1:
        raise StudyConfigError(f"{where}: [{section}] {key}: expected an integer >= 1, got {value!r}")
    return value
