"""Small run configs (YAML text) shared by the task tests."""

# A seconds-long LSTM + attention run on generated dates: the recurrent model through the translation pipeline.
LSTM_DATES = """
task: translation
data: {dataset: dates, n_train: 300, n_valid: 10, tokenizer: char, max_tokens: 512, eval_decode: 5}
model: {type: lstm_attention, d_embed: 16, d_hidden: 32, dropout: 0.0}
train:
  max_steps: 4
  schedule: {kind: constant, warmup_steps: 0}
  eval_every: 2
  checkpoint_every: 2
  log_every: 1
  device: cpu
  progress_bar: false
decode: {beam_size: 2, max_new_tokens: 12}
"""
