"""The lab's synthetic non-IID task: token sequences whose statistics depend on a class.

Vocabulary (ids)::

    0 pad | 1 end | 2 start | 3 .. 3+K-1 one answer token per class | the rest: content tokens

Class c owns a topic: a distribution over the content tokens drawn from Dir(``topic_concentration``).
A prompt is the start token then 16-24 content tokens, each drawn from c's topic with probability
``signal`` and uniformly otherwise (noise); the answer is c's class token and the end token. Train
and held-out examples are drawn the same way, the held-out set stratified (equal counts per class,
in round-robin class order, so any prefix of it is stratified too); the training pool is split
over the clients by the project's Dirichlet partition over the classes, so each client sees a few
classes only. Everything follows from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deca_ray.data.partition import dirichlet_partition, partition_report
from deca_ray.data.types import EncodedExample, PreparedData

PAD, END, START = 0, 1, 2
FIRST_CLASS_TOKEN = 3
_TASK_STREAM = 0x1AB
"""Mixed into the seed, so the task's draws are independent of the partition's and the graph's."""


@dataclass(frozen=True)
class TaskShape:
    """Sizes and difficulty of the synthetic task (the same for every method and seed)."""

    num_classes: int = 6
    vocab_size: int = 64
    min_prompt_tokens: int = 16
    max_prompt_tokens: int = 24
    signal: float = 0.8
    """Share of prompt tokens drawn from the class's topic; the rest is uniform noise."""
    topic_concentration: float = 0.3
    """Dirichlet concentration of each class's topic over the content tokens (smaller: peakier)."""
    train_per_class: int = 80
    test_per_class: int = 67
    num_clients: int = 8
    dirichlet_alpha: float = 0.2
    min_per_client: int = 4

    def __post_init__(self) -> None:
        if self.num_content_tokens < 2:
            raise ValueError(f"vocab_size {self.vocab_size} leaves no content tokens beside {self.num_classes} classes")
        if not 0 <= self.signal <= 1:
            raise ValueError(f"signal must lie in [0, 1], not {self.signal}")
        if not 2 <= self.min_prompt_tokens <= self.max_prompt_tokens:
            raise ValueError("need 2 <= min_prompt_tokens <= max_prompt_tokens")

    @property
    def num_content_tokens(self) -> int:
        return self.vocab_size - FIRST_CLASS_TOKEN - self.num_classes

    @property
    def content_tokens(self) -> np.ndarray:
        return np.arange(FIRST_CLASS_TOKEN + self.num_classes, self.vocab_size)


def class_token(label: int) -> int:
    return FIRST_CLASS_TOKEN + label


def task_rng(seed: int) -> np.random.Generator:
    """The generator a seed's task is drawn from: the topics first, then the training pool, then the held-out set."""
    return np.random.default_rng([seed, _TASK_STREAM])


def topics(shape: TaskShape, rng: np.random.Generator) -> np.ndarray:
    """Each class's distribution over the content tokens: (num_classes, num_content_tokens)."""
    return rng.dirichlet(np.full(shape.num_content_tokens, shape.topic_concentration), size=shape.num_classes)


def draw_examples(
    shape: TaskShape, class_topics: np.ndarray, per_class: int, rng: np.random.Generator
) -> list[EncodedExample]:
    """``per_class`` examples of every class, class by class."""
    examples = []
    content = shape.content_tokens
    for label in range(shape.num_classes):
        for _ in range(per_class):
            length = int(rng.integers(shape.min_prompt_tokens, shape.max_prompt_tokens + 1))
            from_topic = rng.random(length) < shape.signal
            topical = rng.choice(content, length, p=class_topics[label])
            tokens = np.where(from_topic, topical, rng.choice(content, length))
            input_ids = (START, *map(int, tokens), class_token(label), END)
            examples.append(EncodedExample(input_ids, num_prompt_tokens=length + 1, label=label))
    return examples


def interleave(examples: list[EncodedExample], num_classes: int) -> list[EncodedExample]:
    """Class-major examples (equal counts) reordered round-robin over classes: every prefix is stratified."""
    per_class = len(examples) // num_classes
    return [examples[label * per_class + index] for index in range(per_class) for label in range(num_classes)]


def make_task(shape: TaskShape, seed: int) -> PreparedData:
    """Topics, a training pool split over ``shape.num_clients`` clients (Dirichlet over classes), a held-out set."""
    rng = task_rng(seed)
    class_topics = topics(shape, rng)
    pool = draw_examples(shape, class_topics, shape.train_per_class, rng)
    test = interleave(draw_examples(shape, class_topics, shape.test_per_class, rng), shape.num_classes)
    labels = [example.label for example in pool]
    parts = dirichlet_partition(labels, shape.num_clients, shape.dirichlet_alpha, seed, shape.min_per_client)
    label_words = [f"class-{label}" for label in range(shape.num_classes)]
    return PreparedData(
        task="classification",
        client_shards=[[pool[index] for index in part] for part in parts],
        test=test,
        label_words=label_words,
        label_answer_ids=[(class_token(label),) for label in range(shape.num_classes)],
        partition_report=partition_report(labels, parts, label_words),
    )


def topic_distance(class_topics: np.ndarray) -> float:
    """Mean total-variation distance between two classes' topics (1: disjoint, 0: identical)."""
    num_classes = len(class_topics)
    distances = [0.5 * np.abs(class_topics[a] - class_topics[b]).sum()
                 for a in range(num_classes) for b in range(a + 1, num_classes)]
    return float(np.mean(distances))


def bayes_accuracy(shape: TaskShape, class_topics: np.ndarray, examples: list[EncodedExample]) -> float:
    """Accuracy of the Bayes classifier that knows the topics: the ceiling any model can reach on ``examples``."""
    token_probability = shape.signal * class_topics + (1 - shape.signal) / shape.num_content_tokens  # (K, N)
    log_probability = np.log(token_probability)
    offset = FIRST_CLASS_TOKEN + shape.num_classes
    correct = 0
    for example in examples:
        content = np.asarray(example.input_ids[1 : example.num_prompt_tokens]) - offset
        correct += int(np.argmax(log_probability[:, content].sum(axis=1)) == example.label)
    return correct / len(examples)


def task_statistics(shape: TaskShape, seed: int) -> dict[str, float]:
    """How hard the seed's task is: the Bayes ceiling on its held-out set and how far apart the topics are."""
    data = make_task(shape, seed)
    class_topics = topics(shape, task_rng(seed))
    return {"bayes_accuracy": bayes_accuracy(shape, class_topics, data.test),
            "topic_distance": topic_distance(class_topics)}
