"""TRL's GRPOTrainer trains a tiny policy with our adapter as its reward function, calling a live service."""

import pytest


@pytest.mark.slow
def test_grpo_trains_two_steps_on_prm_rewards_from_a_live_service(tiny_backbone, tiny_artifact, tmp_path):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from data_tools.problems import generate_dataset
    from serving.adapters import trl_reward_function
    from serving.launch import served

    tok = AutoTokenizer.from_pretrained(tiny_backbone)
    policy = AutoModelForCausalLM.from_pretrained(tiny_backbone, dtype=torch.float32)
    gold = [ex for ex in generate_dataset(4, seed=3) if ex.meta["first_error"] < 0]
    data = Dataset.from_dict({"prompt": [ex.prompt + "\n" for ex in gold], "answer": [ex.meta["answer"] for ex in gold]})
    calls = []
    with served(tiny_artifact) as client:
        prm_reward = trl_reward_function(client, name="prm_min")

        def reward(prompts, completions, completion_ids=None, **columns):
            calls.append((len(completions), sorted(columns)))
            return prm_reward(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)

        reward.__name__ = "prm_min"
        args = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=4, num_generations=2,
                          max_completion_length=12, max_steps=2, learning_rate=1e-3, logging_steps=1, report_to=[],
                          use_cpu=True, bf16=False, save_strategy="no", seed=0, temperature=1.0)
        trainer = GRPOTrainer(model=policy, reward_funcs=[reward], args=args, train_dataset=data,
                              processing_class=tok)
        trainer.train()
    assert trainer.state.global_step == 2
    assert len(calls) >= 2 and all(n >= 2 for n, _ in calls)
    assert "answer" in calls[0][1]  # dataset columns reach the reward function as keyword arguments
    stats = prm_reward.rewarder.stats
    assert stats["scored"] + stats["empty_completions"] == sum(n for n, _ in calls) and stats["scored"] > 0
    logged = [row for row in trainer.state.log_history if "rewards/prm_min/mean" in row]
    assert logged and all(0.0 <= row["rewards/prm_min/mean"] <= 1.0 for row in logged)
    # both optimisation steps ran on those rewards (whether weights move depends on reward spread in a group)
    assert [row["step"] for row in trainer.state.log_history if "loss" in row] == [1, 2]
