"""What the validate tests share: a study file of a very small model (seconds per run on a CPU)."""

MINI_STUDY_TOML = """
[study]
name = "mini"
storage = "sqlite:///{db}"
trials = 6

[model]
source = "tiny-llama"
overrides = {{ hidden_size = 32, intermediate_size = 64, num_hidden_layers = 1, num_attention_heads = 2 }}

[data]
source = "stdlib"

[proxy]
steps = 4
batch_size = 2
seq_len = 16
eval_every = 2
eval_batches = 1
warmup_steps = 1

[space]
lr = [1e-3, 1e-2]
"""
