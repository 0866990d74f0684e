"""Benchmark harness behind `tformer bench`: tformer against torch.nn.Transformer and HuggingFace peers.

It lives in the package, not in benchmarks/, so that the installed `tformer` command can import it.
"""
