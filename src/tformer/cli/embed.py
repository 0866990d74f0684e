"""`tformer embed train|neighbors|analogy|contexts`: word2vec vectors on WikiText-2, queries on a vectors file,
and the comparison of one word's vectors across sentences with a Transformer language model's."""

from __future__ import annotations

import argparse

from tformer.cli.common import DEVICE_HELP
from tformer.models.word2vec import Word2VecMode
from tformer.tasks.embeddings import (
    Word2VecTraining,
    WordVectors,
    context_similarities,
    train_wikitext2_vectors,
)
from tformer.tasks.runs import load_trained

_DEFAULTS = Word2VecTraining()


def add_parser(sub) -> None:
    p = sub.add_parser(
        "embed",
        help="word2vec: train vectors on WikiText-2, nearest neighbours, analogies",
        description="word2vec (skip-gram or CBOW, negative sampling) and queries on its vectors.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    t = actions.add_parser("train", help="train vectors on WikiText-2 train (word level)")
    t.add_argument("--out", required=True, metavar="FILE.safetensors", help="where to write the vectors")
    t.add_argument(
        "--data-dir", default=None, help="data directory (default: $TFORMER_DATA_DIR or ../shared/data)"
    )
    t.add_argument("--mode", choices=[m.value for m in Word2VecMode], default=_DEFAULTS.mode.value)
    for name, kind, what in (
        ("dim", int, "vector width"),
        ("epochs", int, "passes over the corpus"),
        ("window", int, "largest window; each word draws its own from 1..window"),
        ("negatives", int, "negative samples per example"),
        ("min-count", int, "drop words seen fewer times"),
        ("sample", float, "subsampling threshold t (0: off)"),
        ("batch-size", int, "examples per SGD step"),
        ("seed", int, "seed of every random draw"),
    ):
        default = getattr(_DEFAULTS, name.replace("-", "_"))
        t.add_argument(f"--{name}", type=kind, default=default, help=f"{what} (default: {default})")
    t.add_argument(
        "--lr", type=float, default=None, help="start learning rate (default: 0.025 skip-gram, 0.05 CBOW)"
    )
    t.add_argument("--device", default="auto", help=DEVICE_HELP)
    t.set_defaults(run=run_train)

    n = actions.add_parser("neighbors", help="the words nearest to WORD (cosine)")
    n.add_argument("vectors", metavar="FILE", help="a vectors file from `tformer embed train`")
    n.add_argument("word")
    n.add_argument("-k", type=int, default=10, help="how many (default: 10)")
    n.set_defaults(run=run_neighbors)

    a = actions.add_parser("analogy", help="A is to B as C is to ? (nearest to B - A + C)")
    a.add_argument("vectors", metavar="FILE", help="a vectors file from `tformer embed train`")
    a.add_argument("a")
    a.add_argument("b")
    a.add_argument("c")
    a.add_argument("-k", type=int, default=5, help="how many answers (default: 5)")
    a.set_defaults(run=run_analogy)

    c = actions.add_parser(
        "contexts",
        help="one word in several sentences: word2vec's single vector against a language model's",
        description=(
            "Cosine similarities of WORD's vectors across the SENTENCES: word2vec has one vector per word (all 1), "
            "a Transformer language model one per occurrence (its hidden state at the word). Separate the word "
            "from punctuation for word-level models ('bank ,')."
        ),
    )
    c.add_argument("vectors", metavar="FILE", help="a vectors file from `tformer embed train`")
    c.add_argument("checkpoint", metavar="CHECKPOINT", help="a Transformer language-model checkpoint")
    c.add_argument("word")
    c.add_argument("sentences", nargs="+", metavar="SENTENCE", help="at least two sentences holding WORD")
    c.set_defaults(run=run_contexts)


def run_train(args: argparse.Namespace) -> int:
    training = Word2VecTraining(
        dim=args.dim,
        mode=Word2VecMode(args.mode),
        window=args.window,
        negatives=args.negatives,
        sample=args.sample,
        min_count=args.min_count,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
    )
    vectors, path, seconds = train_wikitext2_vectors(
        args.out, training=training, data_dir=args.data_dir, device=args.device
    )
    run = f"{training.mode.value}, {training.epochs} epochs, {seconds:.0f} s"
    print(f"{len(vectors)} words x {training.dim} ({run}) -> {path}")
    return 0


def run_neighbors(args: argparse.Namespace) -> int:
    for word, similarity in WordVectors.load(args.vectors).neighbors(args.word, k=args.k):
        print(f"{similarity:.4f}  {word}")
    return 0


def run_analogy(args: argparse.Namespace) -> int:
    for word, similarity in WordVectors.load(args.vectors).analogy(args.a, args.b, args.c, k=args.k):
        print(f"{similarity:.4f}  {word}")
    return 0


def run_contexts(args: argparse.Namespace) -> int:
    trained = load_trained(args.checkpoint, device="cpu", task="language_model")
    if not hasattr(trained.model, "hidden_states"):
        raise ValueError(
            f"{args.checkpoint} is a {trained.config.model.type} model; this needs a Transformer (gpt)"
        )
    table = context_similarities(
        args.word,
        args.sentences,
        word_vectors=WordVectors.load(args.vectors),
        language_model=trained.model,
        codec=trained.state,
    )
    print(table.to_markdown())
    return 0
