"""pretrain-operator's data plane: storage, tokenizers, token shards, streaming loader and trainer."""

__version__ = "0.1.0"
