"""The one place studies are opened, created and named; storages by URL; trials whose worker died.

Studies (every stage opens its studies here: the search, the report and export, the fidelity check,
the transfer check, a rebuild):

- :func:`open_study`: the search's study of a ``StudyConfig``, created if new (directions and metric
  names of ``[study] objectives``, the study attributes); a study of other objectives is refused.
- :func:`open_existing_study`: a study that must exist already (report, export, checks), from a
  study file or config, or from a storage URL and a name; nothing is created.
- :func:`transfer_study_name` / :func:`open_transfer_study`: the transfer study ``<study>-transfer``
  in the study's own storage (``frugal_search.validate.transfer``).

Storages by URL:

- ``sqlite:///path.db`` (the default): Optuna's RDB storage on one file. Every transaction takes
  the lock when it begins (so two workers never both start the same enqueued trial), waits up to
  ``SQLITE_BUSY_TIMEOUT_S`` for it instead of failing at once with "database is locked", and the
  file uses write-ahead logging; good for a few workers on one machine.
- ``postgresql+psycopg2://...``, ``mysql+pymysql://...``: RDB storage; the one to use for many
  workers or many machines.
- ``journal:///path.log`` (or a path ending in ``.log`` in the study file): Optuna's journal file
  storage, append-only and safe under concurrency on one machine; no database needed.
- ``grpc://host:port``: Optuna's gRPC storage proxy (``optuna.storages.GrpcStorageProxy``) in front
  of one of the above, for many workers on one database (``frugal_search.search.cluster``).

Dead workers: RDB storages use Optuna's heartbeat (each running trial is stamped every
``heartbeat_interval`` seconds). Journal storages and the gRPC proxy have no heartbeat in Optuna, so
:func:`journal_heartbeat` stamps a trial system attribute instead. On both, a trial not stamped for
``grace_period`` seconds is marked FAIL by :func:`fail_stale_trials`, run by the next worker that
looks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from frugal_search.search.config import StudyConfig

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 120  # seconds a SQLite writer waits for the lock before it gives up
HEARTBEAT_ATTR = "frugal_search:heartbeat"  # journal storages: last "alive" time of a running trial
WORKER_LOST_REASON = "the worker stopped before the trial finished (killed, crashed or lost its storage)"


def journal_path(url: str) -> Path | None:
    """The journal file of a ``journal://`` URL, else None."""
    return Path(url[len("journal://") :]) if url.startswith("journal://") else None


def grpc_address(url: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``grpc://host:port`` URL (Optuna's gRPC storage proxy), else None."""
    if not url.startswith("grpc://"):
        return None
    host, _, port = url[len("grpc://") :].rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"storage {url!r}: write a gRPC storage proxy as grpc://HOST:PORT, e.g. grpc://127.0.0.1:13000")
    return host, int(port)


def _attr_heartbeat(storage: optuna.storages.BaseStorage) -> bool:
    """Whether trials on ``storage`` are stamped by :func:`journal_heartbeat` (no Optuna heartbeat)."""
    import optuna

    return isinstance(storage, (optuna.storages.JournalStorage, optuna.storages.GrpcStorageProxy))


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL, else None (also None for in-memory SQLite)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def printable_storage(url: str) -> str:
    """``url`` as Optuna's own tools take it: a journal storage is its file's path.

    ``optuna studies --storage PATH``, ``optuna-dashboard PATH`` and ``frugal-search --storage
    PATH`` all read a journal file by its path; none of them takes ``journal:///PATH`` (from Python:
    ``optuna.load_study(..., storage=JournalStorage(JournalFileBackend(PATH)))``). Database URLs
    are returned unchanged, with any password hidden.
    """
    path = journal_path(url)
    if path is not None:
        return str(path)
    if "@" in url and "://" in url:
        from sqlalchemy.engine import make_url

        try:
            return make_url(url).render_as_string(hide_password=True)
        except Exception:  # not a URL SQLAlchemy reads: show it as given
            return url
    return url


_CONNECT_TIMEOUT_S = 10  # seconds the set-up check waits for a database server to answer


def check_storage(url: str) -> None:
    """Raise ``ValueError`` (one line naming the storage and what to do) when ``url`` cannot be used.

    Writes nothing: a journal or SQLite file must be creatable where it is asked for (an existing
    writable folder above it, and not a folder itself); a database server must accept a connection
    (a missing database, a refused connection and bad credentials are told apart).
    """
    shown = printable_storage(url)
    address = grpc_address(url)
    if address is not None:
        _check_grpc_proxy(*address)
        return
    path = journal_path(url) or sqlite_path(url)
    if path is not None:
        _check_storage_file(path, shown)
        return
    if url.startswith("sqlite"):
        return  # in-memory SQLite
    import sqlalchemy

    connect_args = {"connect_timeout": _CONNECT_TIMEOUT_S} if url.startswith(("postgresql", "mysql")) else {}
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.SQLAlchemyError as error:
        cause = str(getattr(error, "orig", None) or error).strip().splitlines()
        raise ValueError(
            f"cannot open the storage {shown}: {cause[0] if cause else type(error).__name__}; {_storage_remedy(cause)}"
        ) from None
    finally:
        engine.dispose()


def _check_grpc_proxy(host: str, port: int) -> None:
    import grpc

    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=_CONNECT_TIMEOUT_S)
    except grpc.FutureTimeoutError:
        raise ValueError(
            f"cannot reach the gRPC storage proxy at grpc://{host}:{port} within {_CONNECT_TIMEOUT_S} s; "
            "start it first (frugal-search cluster serve STUDY.toml --port PORT) or fix the host and port"
        ) from None
    finally:
        channel.close()


def _storage_remedy(cause: list[str]) -> str:
    text = " ".join(cause).lower()
    if any(word in text for word in ("password", "authentication", "access denied", 'role "')):
        return "check the user name and password in the URL"
    if "does not exist" in text or "unknown database" in text:
        return "create the database first (PostgreSQL: createdb NAME; MySQL: CREATE DATABASE NAME) or fix its name in the URL"
    return "check that the database server runs and that the host and port in the URL are right"


def _check_storage_file(path: Path, shown: str) -> None:
    if path.is_dir():
        raise ValueError(f"the storage {shown} is a folder; give a file name (e.g. {path / 'study.db'})")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if path.exists():
        writable = os.access(path, os.W_OK)
    else:
        writable = folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)
    if not writable:
        raise ValueError(
            f"the storage {shown} cannot be written ({folder} is not a writable folder); "
            "give --storage a path you can write"
        )


def open_storage(url: str, *, heartbeat_interval: int, grace_period: int) -> optuna.storages.BaseStorage:
    """Return the Optuna storage for ``url`` (creating the file of a SQLite or journal storage).

    RDB storages get Optuna's heartbeat with ``heartbeat_interval`` and ``grace_period`` seconds.
    """
    import optuna

    address = grpc_address(url)
    if address is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.GrpcStorageProxy(host=address[0], port=address[1])
    path = journal_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend)
    engine_kwargs: dict = {}
    database = sqlite_path(url)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
        _use_write_ahead_log(database)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    elif url.startswith(("postgresql", "mysql")):
        engine_kwargs["pool_pre_ping"] = True  # a connection dropped by the server is replaced, not fatal
    with warnings.catch_warnings():
        # heartbeat_interval is marked experimental in Optuna; the warning says nothing to a user.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
        )
    if database is not None:
        _serialize_sqlite_transactions(storage.engine)
    return storage


def _serialize_sqlite_transactions(engine) -> None:  # engine: sqlalchemy.engine.Engine
    """Make every SQLite transaction take the write lock when it begins (``BEGIN IMMEDIATE``).

    Python's sqlite3 driver starts a transaction only at the first write, so two workers can both
    read an enqueued trial as WAITING and both mark it RUNNING (SQLite has no SELECT ... FOR
    UPDATE): the same baseline would then run twice and the second ``tell`` fail. Taking the lock
    at the start turns Optuna's read-check-write into one step; writers queue on the busy timeout.
    This is SQLAlchemy's documented recipe for transactional pysqlite.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event below opens them instead

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners existed are replaced


def _use_write_ahead_log(database: Path) -> None:
    # WAL lets readers (progress bars, other workers' sampler reads) go on while one worker writes;
    # the mode is stored in the file, so setting it once is enough.
    with contextlib.closing(sqlite3.connect(database, timeout=SQLITE_BUSY_TIMEOUT_S)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


@contextlib.contextmanager
def journal_heartbeat(trial: optuna.Trial, *, interval: float) -> Iterator[None]:
    """Stamp ``trial`` as alive every ``interval`` seconds while the block runs (journal storages and
    the gRPC proxy)."""
    if not _attr_heartbeat(trial.storage):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                trial.storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, time.time())
            except Exception:  # the trial finished or the file is gone: nothing left to stamp
                return
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def fail_stale_trials(study: optuna.Study, *, grace_period: float) -> list[int]:
    """Mark FAIL every RUNNING trial whose worker stopped stamping it; return their numbers.

    A trial's last sign of life is its latest heartbeat (Optuna's heartbeat table on RDB storages,
    :data:`HEARTBEAT_ATTR` on journal storages), or its start while it has none: a worker killed
    between starting a trial and its first heartbeat leaves such a trial, which Optuna's own check
    never fails, so a resumed study would wait on it forever. A failed trial that does not say why,
    or that still says how its run ended (the worker died between writing the outcome and telling
    the storage), gets ``outcome = "error"`` and :data:`WORKER_LOST_REASON`.
    """
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return []
    if _attr_heartbeat(storage):
        now = time.time()
        beats = {
            trial._trial_id: now - float(trial.system_attrs[HEARTBEAT_ATTR])
            for trial in running
            if HEARTBEAT_ATTR in trial.system_attrs
        }
    else:
        rdb = getattr(storage, "_backend", storage)  # Optuna wraps RDB storages in a cache
        beats = _seconds_since_rdb_heartbeats(rdb, [trial._trial_id for trial in running])
    failed = []
    for trial in running:
        age = beats.get(trial._trial_id)
        if age is None and trial.datetime_start is not None:
            # Optuna stores start times as naive local time: workers are assumed to share a zone
            age = time.time() - trial.datetime_start.timestamp()
        if age is not None and age > grace_period and _fail_lost_trial(storage, trial):
            failed.append(trial.number)
    if failed:
        logger.warning("marked trials %s as failed: their worker stopped (killed or lost)", failed)
    return failed


def _seconds_since_rdb_heartbeats(storage: optuna.storages.RDBStorage, trial_ids: list[int]) -> dict[int, float]:
    """Seconds since each trial's last Optuna heartbeat, by trial id (trials with none are left out).

    Ages are taken on the database's clock, the one Optuna stamps heartbeats with.
    """
    import sqlalchemy
    from optuna.storages._rdb import models

    session = storage.scoped_session()
    try:
        now = session.execute(sqlalchemy.func.now()).scalar().replace(tzinfo=None)
        rows = (
            session.query(models.TrialHeartbeatModel)
            .filter(models.TrialHeartbeatModel.trial_id.in_(trial_ids))
            .all()
        )
        return {row.trial_id: (now - row.heartbeat).total_seconds() for row in rows}
    finally:
        session.rollback()
        storage.scoped_session.remove()


def _fail_lost_trial(storage: optuna.storages.BaseStorage, trial: optuna.trial.FrozenTrial) -> bool:
    """Mark a dead worker's trial FAIL, saying so; False if another worker finished it first."""
    import optuna
    from optuna.trial import TrialState

    try:
        # killed before the objective wrote its first line, or after it wrote the run's outcome but
        # before the storage was told: either way the trial ends FAIL, so it says error and why
        if "reason" not in trial.user_attrs or trial.user_attrs.get("outcome") != "error":
            storage.set_trial_user_attr(trial._trial_id, "outcome", "error")
            storage.set_trial_user_attr(trial._trial_id, "reason", WORKER_LOST_REASON)
        storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    return True


# --- studies ------------------------------------------------------------------------------------

TRANSFER_SUFFIX = "-transfer"
"""The transfer study of study ``S`` is named ``S-transfer`` and lives in the same storage."""
TRANSFER_DIRECTIONS = ("minimize", "minimize")  # a transfer run's values: target eval_loss, state_mib
# Heartbeat settings handed to the storage when no study file gives them; a reader runs no trial,
# so they only have to be valid.
_READER_HEARTBEAT_INTERVAL = 10
_READER_GRACE_PERIOD = 60


def transfer_study_name(study_name: str) -> str:
    """Return the name of the transfer study of ``study_name`` (``<study_name>-transfer``)."""
    return study_name + TRANSFER_SUFFIX


def _create_or_load(
    storage: optuna.storages.BaseStorage,
    name: str,
    directions: list[str] | tuple[str, ...],
    *,
    sampler: optuna.samplers.BaseSampler | None = None,
) -> optuna.Study:
    """The package's one ``optuna.create_study`` call: open study ``name``, creating it if new."""
    import optuna

    return optuna.create_study(
        storage=storage, study_name=name, directions=list(directions), load_if_exists=True, sampler=sampler
    )


def _config_storage(config: StudyConfig) -> optuna.storages.BaseStorage:
    return open_storage(
        config.study.storage,
        heartbeat_interval=config.study.heartbeat_interval,
        grace_period=config.study.grace_period,
    )


def open_study(config: StudyConfig, *, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """Open the config's study, creating it (directions, metric names, study attributes) if new.

    Raises ``ValueError`` when the stored study holds other objectives than ``[study] objectives``.
    """
    import optuna

    directions, names = config.directions, config.metric_names
    study = _create_or_load(_config_storage(config), config.study.name, directions, sampler=sampler)
    held = [direction.name.lower() for direction in study.directions]
    stored_names = study.metric_names
    if held != directions or (stored_names is not None and stored_names != names):
        what = f"objectives {stored_names}" if stored_names is not None else "no objective names"
        raise ValueError(
            f"study {config.study.name!r} in {config.study.storage} holds {what} with directions {held}, "
            f"not {names} with {directions} as [study] objectives asks; its trials cannot be compared: "
            f"pick another [study] name (or --name), or set objectives back to {stored_names or held}"
        )
    if stored_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)
    if "space" not in study.user_attrs:
        study.set_user_attr("space", config.space.to_dict())
        study.set_user_attr("memory_budget", config.study.memory_budget)
        study.set_user_attr("study_file", str(config.path) if config.path else None)
    return study


def open_transfer_study(config: StudyConfig) -> optuna.Study:
    """Open the transfer study of ``config``'s study (:func:`transfer_study_name`, in the same
    storage), creating it if new; its values are a target run's eval loss and state MiB."""
    return _create_or_load(_config_storage(config), transfer_study_name(config.study.name), TRANSFER_DIRECTIONS)


@dataclass(frozen=True)
class OpenedStudy:
    """A loaded study with what was used to find it."""

    study: optuna.Study
    storage_url: str
    config: Any = None  # the StudyConfig when opened from a study file or config
    study_file: Path | None = None


def open_existing_study(
    study_file: str | Path | StudyConfig | None = None,
    *,
    storage: str | None = None,
    name: str | None = None,
) -> OpenedStudy:
    """Load an existing study from ``study_file`` (a study TOML, or its loaded ``StudyConfig``) or from
    ``storage`` + ``name``.

    ``storage`` and ``name`` override the file's values. Raises ``ValueError`` when neither a file
    nor both storage and name are given, when a SQLite or journal file does not exist (nothing is
    created), or when the storage holds no study of that name (naming the studies it holds).
    """
    import optuna

    from frugal_search.search.config import StudyConfig, load_study_config, normalize_storage

    config = None
    heartbeat_interval, grace_period = _READER_HEARTBEAT_INTERVAL, _READER_GRACE_PERIOD
    if study_file is not None:
        loaded = study_file if isinstance(study_file, StudyConfig) else load_study_config(study_file)
        config = loaded.with_overrides(storage=storage, name=name)
        storage, name = config.study.storage, config.study.name
        heartbeat_interval, grace_period = config.study.heartbeat_interval, config.study.grace_period
        if isinstance(study_file, StudyConfig):
            study_file = study_file.path
    elif storage is not None:
        storage = normalize_storage(storage, base_dir=Path.cwd(), where="--storage")
    if storage is None or name is None:
        raise ValueError(
            f"cannot find the study: study file={study_file!r}, storage={storage!r}, name={name!r}; "
            "give a study TOML (studies/<name>.toml) or both --storage URL and --name NAME"
        )
    storage_file = sqlite_path(storage) or journal_path(storage)
    if storage_file is not None and not storage_file.exists():
        raise ValueError(
            f"the storage file {storage_file} of study {name!r} does not exist; run the search first "
            f"(frugal-search run {study_file or '<study.toml>'}) or check --storage"
        )
    backend = open_storage(storage, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    try:
        study = optuna.load_study(study_name=name, storage=backend)
    except KeyError:
        held = [summary.study_name for summary in optuna.get_all_study_summaries(backend)]
        raise ValueError(
            f"storage {storage!r} holds no study named {name!r} (it holds: {', '.join(held) or 'none'}); "
            "run the search first (frugal-search run <study.toml>) or check --name"
        ) from None
    return OpenedStudy(
        study=study,
        storage_url=storage,
        config=config,
        study_file=Path(study_file) if study_file is not None else None,
    )
