"""tformer: the Transformer of "Attention Is All You Need", written clearly and checked against references."""

__version__ = "0.1.0"
