"""Minimal plain-TRL SFT: the baseline that benchmarks/bench_train.py compares train.py with.

No trackio, no eval, no callbacks, no summary file. Same machine defaults as train.py
(fp32 and no activation checkpointing on CPU) so only the wrapper differs. Tokens are
counted as train.py counts them: ``state.num_input_tokens_seen`` with
``include_num_input_tokens_seen="non_padding"``, divided by the Trainer's
``train_runtime``. The last line printed is JSON with ``train_tokens_per_s``.
"""

import argparse
import json

import torch
from datasets import load_dataset
from trl import SFTConfig, SFTTrainer

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--data", required=True)
parser.add_argument("--output-dir", required=True)
parser.add_argument("--max-steps", type=int, default=12)
parser.add_argument("--batch-size", type=int, default=4)
parser.add_argument("--learning-rate", type=float, default=5e-4)
parser.add_argument("--max-length", type=int, default=128)
parser.add_argument("--logging-steps", type=int, default=1)
parser.add_argument("--seed", type=int, default=42)
args = parser.parse_args()

cuda = torch.cuda.is_available()
config = SFTConfig(
    output_dir=args.output_dir,
    max_steps=args.max_steps,
    per_device_train_batch_size=args.batch_size,
    learning_rate=args.learning_rate,
    max_length=args.max_length,
    logging_steps=args.logging_steps,
    seed=args.seed,
    save_strategy="no",
    report_to="none",
    use_cpu=not cuda,
    bf16=cuda and torch.cuda.is_bf16_supported(),
    activation_checkpointing=cuda,  # as train.py: TRL's default on GPU, off on CPU
    include_num_input_tokens_seen="non_padding",
)
dataset = load_dataset("json", data_files=args.data, split="train")
trainer = SFTTrainer(model=args.model, args=config, train_dataset=dataset)
output = trainer.train()
runtime = float(output.metrics["train_runtime"])
tokens = int(trainer.state.num_input_tokens_seen)
result = {
    "train_tokens": tokens,
    "runtime_s": round(runtime, 3),
    "steps": trainer.state.global_step,
}
result["train_tokens_per_s"] = round(tokens / runtime, 2) if runtime > 0 else None
print(json.dumps(result), flush=True)
