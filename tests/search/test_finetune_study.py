"""Fine-tuning studies: the [task] section, [study] objectives, the lora baseline, end to end.

The end-to-end study fine-tunes a very small LLaMA saved as a local model directory (weights, so a
classifier's backbone is loaded as from any checkpoint) on the built-in ``stdlib-packages`` task.
"""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from frugal_search.proxy import LoraSpec, ModelSpec, build_model, peft_available
from frugal_search.report import pareto_front, select_trial, study_objective, trials_table, write_report
from frugal_search.search import is_repeat, open_study, run_search
from frugal_search.search.config import StudyConfigError, load_study_config
from frugal_search.proxy import LORA_RANK
from frugal_search.search.storage import open_storage

NEEDS_PEFT = pytest.mark.skipif(not peft_available(), reason="the lora baseline needs peft: pip install peft")
SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
CLASSES = 12  # stdlib-packages

FINETUNE = """
[study]
name = "ft"
trials = 2
sampler = "random"
objectives = ["accuracy", "state_mib"]
baselines = ["adamw", "lora"]
baseline_lrs = [3e-3]
front_seeds = 1

[task]
kind = "sequence-classification"

[search]
confirm_top = 2
confirm_seeds = 2

[model]
source = "MODEL_DIR"

[data]
source = "stdlib-packages"

[proxy]
steps = 4
batch_size = 4
seq_len = 32
eval_every = 2
eval_batches = 2

[space]
lr = [1e-3, 1e-2]
embedding_role = ["stateful", "frozen"]
"""


def write(folder: Path, text: str, name: str = "study.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small pretrained-looking checkpoint: config.json and model.safetensors of a tiny LLaMA."""
    folder = tmp_path_factory.mktemp("checkpoint")
    build_model(ModelSpec("tiny-llama", overrides=SMALL), seed=1).save_pretrained(folder)
    return folder


# ---- [task] and [study] objectives in the study file ------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('kind = "sequence-classification"', 'kind = "regression"'),
         r"\[task\] kind: 'regression' is not allowed; allowed: causal-lm \| sequence-classification"),
        (('kind = "sequence-classification"', 'kind = "sequence-classification"\nlabels = 3'),
         r"\[task\] unknown key 'labels'; allowed: kind"),
        (('objectives = ["accuracy", "state_mib"]', 'objectives = ["accuracy"]'),
         r"\[study\] objectives: expected two names, a figure and a memory"),
        (('objectives = ["accuracy", "state_mib"]', 'objectives = ["perplexity", "state_mib"]'),
         r"'perplexity' is not a figure of a sequence-classification task; allowed first: "
         r"eval_loss \| accuracy \| macro_f1"),
        (('objectives = ["accuracy", "state_mib"]', 'objectives = ["accuracy", "gpu_mib"]'),
         r"'gpu_mib' is not a memory objective; allowed second: state_mib \| training_mib"),
        (('kind = "sequence-classification"', 'kind = "causal-lm"'),
         r"'accuracy' is not a figure of a causal-lm task; allowed first: eval_loss"),
        (('source = "stdlib-packages"', 'source = "stdlib"'),
         r"\[data\] source: 'stdlib' is not labelled data"),
        (('source = "stdlib-packages"', 'source = "stdlib-packages"\ntokenizer = "bytes"'),
         r"\[data\] unknown key 'tokenizer'; allowed: source, text_column, text_pair_column, label_column"),
        (('baselines = ["adamw", "lora"]', 'baselines = ["adamw", "qlora"]'),
         r"'qlora' is not a baseline; allowed: .*lora"),
        (('[search]\n', '[search]\nfidelity = "successive-halving"\n'),
         r"successive halving ranks trials by eval loss"),
    ],
)
def test_task_and_objective_mistakes_name_the_key_and_the_allowed_values(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    old, new = change
    assert old in FINETUNE
    path = write(tmp_path, FINETUNE.replace(old, new, 1).replace("MODEL_DIR", str(tmp_path)))
    with pytest.raises(StudyConfigError, match=expected) as caught:
        load_study_config(path)
    assert str(path) in str(caught.value)


def test_a_classification_study_reads_labelled_data_and_derives_its_directions(tmp_path: Path) -> None:
    config = load_study_config(write(tmp_path, FINETUNE.replace("MODEL_DIR", str(tmp_path))))
    assert config.is_classification and config.task.kind == "sequence-classification"
    assert type(config.data_spec()).__name__ == "LabelledDataSpec"
    assert config.metric_names == ["accuracy", "state_mib"] and config.directions == ["maximize", "minimize"]
    # without [task] and objectives a study is the causal-lm one it always was
    default = load_study_config(write(tmp_path, '[model]\nsource = "tiny-llama"\n[space]\nlr = [1e-3, 1e-2]\n', "lm.toml"))
    assert not default.is_classification
    assert default.metric_names == ["eval_loss", "state_mib"] and default.directions == ["minimize", "minimize"]


# ---- end to end --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_study(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, optuna.Study]:
    if not peft_available():
        pytest.skip("the lora baseline needs peft: pip install peft")
    folder = tmp_path_factory.mktemp("study")
    path = write(folder, FINETUNE.replace("MODEL_DIR", str(model_dir)))
    study = run_search(load_study_config(path), workers=1, progress=False)
    return path, study


@NEEDS_PEFT
def test_a_classification_study_maximises_accuracy_end_to_end(finished_study, tmp_path: Path) -> None:
    path, study = finished_study
    assert [d.name.lower() for d in study.directions] == ["maximize", "minimize"]
    assert study.metric_names == ["accuracy", "state_mib"]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    searched = [t for t in complete if not t.user_attrs.get("baseline") and not is_repeat(t.user_attrs)]
    assert len(searched) == 2
    # the confirmation rung ran too, in accuracy's direction: 2 promoted (+ the best baseline) x 2 seeds
    rung = [t for t in complete if t.user_attrs.get("rung_of") is not None]
    assert len(rung) in (4, 6) and all(t.user_attrs["steps"] == 4 * 4 for t in rung)
    for trial in complete:
        accuracy, state_mib = trial.values
        assert accuracy == trial.user_attrs["accuracy"] and 0.0 <= accuracy <= 1.0
        assert state_mib * 2**20 == trial.user_attrs["state_bytes"]
    # the report's front keeps the highest accuracy at each memory: checked by hand on the table
    objective = study_objective(study)
    assert objective.maximize and objective.name == "accuracy"
    table = trials_table(study)
    front = pareto_front(table, objective)
    rows = [r for r in table.itertuples()
            if r.state == "COMPLETE" and math.isnan(r.seed_of) and math.isnan(r.rung_of) and not r.over_budget]
    expected = {
        a.number for a in rows
        if not any(
            (b.accuracy >= a.accuracy and b.state_mib <= a.state_mib)
            and (b.accuracy > a.accuracy or b.state_mib < a.state_mib)
            for b in rows
        )
    }
    assert set(front["number"]) == expected
    text = write_report(study, tmp_path / "report").read_text()
    assert "accuracy: higher is better" in text and "highest accuracy" in text
    assert "were trained again 4x longer (16 steps), 2 seeds each" not in text  # no config given: steps unknown
    assert "were trained again 4x longer, 2 seeds each" in text
    assert "lower is better" not in text


@NEEDS_PEFT
def test_the_lora_baseline_is_a_trial_with_its_memory_counted_honestly(finished_study, model_dir: Path) -> None:
    path, study = finished_study
    lora = [t for t in study.trials if t.user_attrs.get("baseline") == "lora"]
    assert len(lora) == 1 and lora[0].state == TrialState.COMPLETE
    trial = lora[0]
    assert trial.user_attrs["split"]["method"] == "lora" and trial.user_attrs["split"]["rank"] == LORA_RANK
    planned = LoraSpec(rank=LORA_RANK).training_memory(build_model(str(model_dir), num_labels=CLASSES))
    assert trial.user_attrs["state_bytes"] == planned.state_bytes  # what LoraSpec counts
    assert trial.user_attrs["training_memory"]["state_bytes"] == planned.state_bytes  # what the run measured
    assert trial.user_attrs["training_bytes"] == planned.total_bytes == trial.user_attrs["training_memory"]["total_bytes"]
    # its seed replica runs the same adapter
    replicas = [t for t in study.trials if t.user_attrs.get("seed_of") == trial.number]
    assert replicas and replicas[0].user_attrs["split"] == trial.user_attrs["split"]
    # and it is not a split: export says so in one line
    with pytest.raises(ValueError, match="is a LoRA trial .*not a split") as caught:
        select_trial(study, trial=trial.number)
    assert "\n" not in str(caught.value)


@NEEDS_PEFT
def test_reopening_a_study_with_other_objectives_fails_clearly(finished_study) -> None:
    path, _ = finished_study
    text = path.read_text().replace('objectives = ["accuracy", "state_mib"]', 'objectives = ["eval_loss", "state_mib"]')
    other = path.with_name("other-objectives.toml")
    other.write_text(text.replace('name = "ft"', 'name = "ft"\nstorage = "sqlite:///' + str(path.with_name("ft.db")) + '"'))
    config = load_study_config(other)
    with pytest.raises(ValueError, match=r"holds objectives \['accuracy', 'state_mib'\].*not \['eval_loss', 'state_mib'\]"):
        open_study(config)
    storage = open_storage(config.study.storage, heartbeat_interval=10, grace_period=60)
    assert optuna.load_study(study_name="ft", storage=storage).metric_names == ["accuracy", "state_mib"]  # untouched


def test_bad_labelled_data_stops_the_run_before_any_storage(tmp_path: Path, model_dir: Path) -> None:
    from frugal_search.search import SetupError

    rows = tmp_path / "rows.csv"
    rows.write_text("text,kind\nimport os,a\nimport re,b\n")  # no 'label' column
    text = FINETUNE.replace("MODEL_DIR", str(model_dir)).replace('source = "stdlib-packages"', f'source = "{rows}"')
    path = write(tmp_path, text)
    with pytest.raises(SetupError, match=r"^\[data\] .*label") as caught:
        run_search(load_study_config(path), workers=1, progress=False)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "ft.db").exists()  # no study, no trial


@NEEDS_PEFT
def test_the_fidelity_check_refuses_a_fine_tuning_study(finished_study, capsys: pytest.CaptureFixture[str]) -> None:
    from frugal_search.cli import main

    path, _ = finished_study
    assert main(["validate", str(path)]) == 2
    assert "compares eval losses; this study's objectives are ['accuracy', 'state_mib']" in capsys.readouterr().err
