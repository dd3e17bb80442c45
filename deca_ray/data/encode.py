"""Records → EncodedExamples: chat prompts whose answer (label word or response) carries the loss.

Classification prompts are assembled from token ids, not strings: the chat template's parts
and the instruction are tokenised once, so truncating the article to ``max_tokens`` is an
exact slice and the answer ids of a label are the same in every example and in
``PreparedData.label_answer_ids``. Segments meet at pre-tokeniser boundaries ('.' then
'\\n', text then a special token), so untruncated prompts equal the chat template's own ids.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from deca_ray.data.sources import Record
from deca_ray.data.types import EncodedExample
from deca_ray.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_INSTRUCTION = "Classify the topic of the following text. Answer with one of: {labels}."
_CONTENT = "\x00DECA_RAY_CONTENT\x00"


@dataclass(frozen=True)
class ClassificationPrompt:
    """Token ids shared by every classification example of one run."""

    label_words: tuple[str, ...]
    header_ids: tuple[int, ...]
    """Chat template up to the user's content (the instruction is the system message)."""
    footer_ids: tuple[int, ...]
    """End of the user turn and the assistant generation prompt."""
    answer_ids: tuple[tuple[int, ...], ...]
    """Each label word's ids, without the end-of-turn token."""
    end_id: int


def label_words_for(label_names: Sequence[str], mapping: Mapping[str, str] | None) -> list[str]:
    """The answer word of each label: ``data.label_words`` where given, else the label itself."""
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - set(label_names))
    if unknown:
        raise ConfigError(f"data.label_words names unknown labels {unknown}; the labels are: {', '.join(label_names)}")
    words = [mapping.get(name, name).strip() for name in label_names]
    if len(set(words)) < len(words) or not all(words):
        raise ConfigError(f"data.label_words must give each label a distinct, non-empty word (got {words})")
    return words


def classification_prompt(tokenizer: PreTrainedTokenizerBase, label_words: Sequence[str], instruction: str | None) -> ClassificationPrompt:
    """Tokenise the template parts (instruction included) and the label words once."""
    text = (instruction or DEFAULT_INSTRUCTION).replace("{labels}", ", ".join(label_words)).strip()
    head, foot = _template_parts(tokenizer, text)
    return ClassificationPrompt(
        label_words=tuple(label_words),
        header_ids=tuple(_ids(tokenizer, head)),
        footer_ids=tuple(_ids(tokenizer, foot)),
        answer_ids=tuple(tuple(_ids(tokenizer, word)) for word in label_words),
        end_id=int(tokenizer.eos_token_id),
    )


def encode_classification(
    records: Sequence[Record],
    label_indices: Sequence[int],
    prompt: ClassificationPrompt,
    tokenizer: PreTrainedTokenizerBase,
    body_words: int | None,
    max_tokens: int,
) -> list[EncodedExample]:
    """header + article (truncated to fit) + footer | label word + end-of-turn; loss after the bar."""
    template_tokens = len(prompt.header_ids) + len(prompt.footer_ids)
    longest_answer = 1 + max(len(ids) for ids in prompt.answer_ids)
    if max_tokens - template_tokens - longest_answer < 1:
        raise ConfigError(
            f"data.max_tokens={max_tokens} leaves no room for the text: the chat template and instruction take "
            f"{template_tokens} tokens and the longest answer {longest_answer}; raise data.max_tokens or shorten data.instruction"
        )
    articles = [_article(record, body_words) for record in records]
    article_ids = tokenizer(articles, add_special_tokens=False)["input_ids"] if articles else []
    examples = []
    for ids, label in zip(article_ids, label_indices, strict=True):
        answer = (*prompt.answer_ids[label], prompt.end_id)
        text_budget = max_tokens - template_tokens - len(answer)
        prompt_ids = (*prompt.header_ids, *ids[:text_budget], *prompt.footer_ids)
        examples.append(EncodedExample(prompt_ids + answer, len(prompt_ids), int(label)))
    return examples


def encode_instruction(records: Sequence[Record], tokenizer: PreTrainedTokenizerBase, max_tokens: int) -> list[EncodedExample]:
    """Chat prompt → response + end-of-turn, loss on the response.

    Over budget, the prompt loses its middle (its start and the generation prompt stay), down
    to half the budget; a response still too long loses its tail (and then its end token).
    """
    examples = []
    for record in records:
        messages, response = _conversation(record)
        prompt_ids = list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False))
        response_ids = [*_ids(tokenizer, response), int(tokenizer.eos_token_id)]
        prompt_ids, response_ids = fit_budget(prompt_ids, response_ids, max_tokens)
        examples.append(EncodedExample(tuple(prompt_ids + response_ids), len(prompt_ids), -1))
    return examples


def fit_budget(prompt_ids: list[int], response_ids: list[int], max_tokens: int) -> tuple[list[int], list[int]]:
    """Cut the prompt's middle, then the response's tail, until both fit in ``max_tokens``."""
    if len(prompt_ids) + len(response_ids) <= max_tokens:
        return prompt_ids, response_ids
    keep = max(max_tokens - len(response_ids), min(len(prompt_ids), max_tokens // 2))
    head = (keep + 1) // 2
    prompt_ids = prompt_ids[:head] + prompt_ids[len(prompt_ids) - (keep - head) :]
    return prompt_ids, response_ids[: max_tokens - len(prompt_ids)]


def _template_parts(tokenizer: PreTrainedTokenizerBase, instruction: str) -> tuple[str, str]:
    """The chat template around the user's message, as (before, after) strings.

    The instruction is the system message: it replaces the template's default system prompt
    (SmolLM2's costs ~20 tokens), leaving more of the token budget for the article.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("the tokenizer has no chat template; set model.tokenizer to an instruct/chat tokenizer")
    messages = [{"role": "system", "content": instruction}, {"role": "user", "content": _CONTENT}]
    rendered = str(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    before, found, after = rendered.partition(_CONTENT)
    if not found or _CONTENT in after:
        raise ConfigError("the tokenizer's chat template alters the user's message; set model.tokenizer to another one")
    return before, after


def _article(record: Record, body_words: int | None) -> str:
    # The header ends with "user\n" and the text has no trailing space: both ends are
    # pre-tokeniser boundaries, so slicing the article's ids is exact.
    text = " ".join(record["text"].split()[:body_words]) if body_words else record["text"].strip()
    title = f"Title: {record['title'].strip()}\n\n" if record.get("title") else ""
    return f"{title}Text: {text}"


def _conversation(record: Record) -> tuple[list[dict[str, str]], str]:
    """(messages before the last assistant turn, that turn's content)."""
    if "messages" not in record:
        return [{"role": "user", "content": record["prompt"]}], record["response"]
    messages = record["messages"]
    last = max(i for i, message in enumerate(messages) if message["role"] == "assistant")
    return messages[:last], messages[last]["content"]


def _ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
