"""Import paths people use keep working: every `from X import Y` the README shows, and the public names of
the modules as they stood before the house was regrouped by stage (now short re-exports)."""

import importlib
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"

# Public names per module before the regrouping (module-level classes, functions and constants).
BEFORE = {
    "data_tools.answers": "EXTRACTORS DEFAULT_TIMEOUT_S Verdict extract_answer normalize to_number answers_match",
    "data_tools.binary_search": "binary_label_batch binary_label",
    "data_tools.cli": "register field_docs add_config_flags config_from",
    "data_tools.inject": "INPUT_FORMATS DRAWS_PER_CHOICE evaluate quantize render Token Calc Step parse_step "
                         "parse_solution Injection inject_variants InjectConfig InjectReport inject_errors",
    "data_tools.label_job": "LabelJobConfig JobResult runs_path run_label_job",
    "data_tools.labelling": "FEW_SHOT render_prefix METHODS LabelConfig LabelReport RolloutBank mc_label_batch collect "
                            "mc_label hash_steps first_error",
    "data_tools.openai_completer": "RETRY_STATUS FATAL_STATUS MAX_BACKOFF_S ServerSettingsError OpenAIConfig HTTPStats "
                                   "OpenAICompleter",
    "data_tools.problems": "NAMES ITEMS ADD_PHRASES SUB_PHRASES ERROR_KINDS Op Problem run_ops render_steps "
                           "generate_problem gold_example inject_error generate_dataset ground_truth_labels",
    "data_tools.rollouts": "STOP RolloutRequest Completer Sampling rollout_seed truncate_at_stop",
    "data_tools.schema": "DataError StepwiseExample read_jsonl write_jsonl",
    "data_tools.simulated": "SimulatedConfig SimulatedCompleter",
    "data_tools.vllm_completer": "VLLMConfig vllm_inputs VLLMCompleter",
    "prm": "PRM",
    "prm.artifacts": "HEAD_FILE TRAINING_FILE load_tokenizer new_scorer truncate_layers save_artifact load_scorer "
                     "check_step_token write_manifest",
    "prm.backbone": "DEFAULT_BACKBONE cache_dir gguf_path default_backbone_dir resolve_backbone",
    "prm.bf16_weights": "BF16_FILE BF16Linear linears use_bf16_weights input_hessians gptq_bf16 write_bf16_weights "
                        "bf16_sdpa register_bf16_attention",
    "prm.calibrate": "CALIBRATION_FILE METHODS TemperatureScaler PlattScaler IsotonicCalibrator CALIBRATORS "
                     "make_calibrator PerPositionCalibrator apply_calibration save_calibration load_calibration ece "
                     "brier reliability_diagram labelled_steps fit_calibration calibration_report",
    "prm.config": "DEFAULT_STEP_TOKEN AGGREGATIONS PRMConfig",
    "prm.eval": "auroc step_auroc first_error predicted_first_error processbench_metrics processbench "
                "choose_threshold last_step_share Candidate best_of_n best_of_n_curve",
    "prm.eval.run": "BACKENDS ScoreConfig ProcessBenchConfig BestOfNConfig make_scorer score read_examples "
                    "first_errors run_processbench canonical_answer candidate_facts run_bon",
    "prm.evaluation": "auroc",
    "prm.export": "EXPORT_PLANS export_onnx merge_shared_matmuls parity Int8Gate Int8GateError quantize_int8 "
                  "gate_labels weight_matmuls head_matmuls compare_backends",
    "prm.fpenv": "preserved denormals_flushed",
    "prm.model": "StepScorer StepLogitsForExport unwrap_peft",
    "prm.rollout_model": "load_completer",
    "prm.scoring": "ONNX_FILE ONNX_INT8_FILE BACKENDS OVERFLOW aggregate Scorer",
    "prm.tokenization": "IGNORE Encoded TooLongError encode place_labels",
    "prm.train": "CHECKPOINTS RUN_FILE LORA_TARGETS TrainConfig training_labels last_step_labels PadCollator "
                 "length_grouped_indices LengthGroupedSampler encode_dataset rows_digest find_checkpoint build_scorer "
                 "attention_kernel add_lora merged_backbone build_trainer train replica_digests fit_probe_head "
                 "freeze_bottom",
    "serving.client": "RETRY_STATUS ServiceError PRMClient AsyncPRMClient",
    "serving.launch": "free_port serve_command served",
}
# Moved where the layering wants them, with no re-export at the old path (data_tools may not import prm;
# prm.model may not import prm.pretrained, which imports it):
#   data_tools.kv_cache, data_tools.shared_prefix, data_tools.rollouts.HFCompleter -> prm.generation
#   prm.model.PRM -> prm.PRM (prm.pretrained)


def readme_imports() -> list[tuple[str, list[str]]]:
    text = README.read_text()
    found = [(m.group(1), [n.strip() for n in m.group(2).split(",")])
             for m in re.finditer(r"from ([a-z_][\w.]*) import ([\w, ]+)", text)]
    found += [(m.group(1).rpartition(".")[0], [m.group(1).rpartition(".")[2]])
              for m in re.finditer(r"`((?:prm|serving|data_tools)\.[\w.]+\.[a-z_]\w*)`", text)
              if importlib.util.find_spec(m.group(1).rpartition(".")[0].split(".")[0])]
    return found


def test_the_readme_shows_imports():
    modules = {m for m, _ in readme_imports()}
    assert {"serving.client", "serving.adapters", "serving.search", "prm"} <= modules


@pytest.mark.parametrize("module,names", readme_imports())
def test_readme_import_works(module, names):
    mod = importlib.import_module(module)
    for name in names:
        assert hasattr(mod, name) or importlib.util.find_spec(f"{module}.{name}"), f"{module}.{name}"


@pytest.mark.parametrize("module", sorted(BEFORE))
def test_old_import_paths_still_work(module):
    mod = importlib.import_module(module)
    missing = [n for n in BEFORE[module].split() if not hasattr(mod, n)]
    assert missing == [], f"{module} lost {missing}"
