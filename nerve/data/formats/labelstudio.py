"""Label Studio's JSON (tasks with NER ``labels`` results) to and from :class:`Example` lists.

A task is ``{"id", "data": {"<text key>": "..."}, "annotations": [{"result": [...]}]}``; an NER
result is ``{"from_name", "to_name", "type": "labels", "value": {"start", "end", "text",
"labels": ["TYPE"]}}``. Label Studio counts ``start``/``end`` in Unicode code points, as Python's
``str`` does (its editor stopped counting UTF-16 units in 2021); a result from an older export
whose ``value.text`` only fits the UTF-16 reading is converted.
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from nerve.data.formats.base import FormatError, make_span
from nerve.vocab.types import Example, Span

DEFAULT_TEXT_KEY = "text"


@dataclass(frozen=True)
class LabelConfig:
    """What an NER labeling config names: ``<Labels name=from_name toName=to_name>`` holding
    ``<Label value=...>`` tags, over ``<Text name=to_name value="$text_key">``."""

    from_name: str = "label"
    to_name: str = "text"
    text_key: str = DEFAULT_TEXT_KEY
    labels: tuple[str, ...] = ()


def parse_label_config(xml: str) -> LabelConfig:
    """The first ``<Labels>`` tag bound to a ``<Text>`` tag of a labeling config."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise FormatError(f"labeling config is not valid XML: {exc}") from exc
    texts = {
        node.get("name", ""): node.get("value", "")
        for node in root.iter()
        if node.tag == "Text" and node.get("name")
    }
    for node in root.iter():
        if node.tag != "Labels":
            continue
        to_name = node.get("toName", "")
        if to_name not in texts:
            continue
        value = texts[to_name]
        if not value.startswith("$") or len(value) < 2:
            raise FormatError(
                f"labeling config: <Text name={to_name!r}> has value={value!r}; expected '$<key>'"
            )
        labels = tuple(label.get("value", "") for label in node.iter("Label") if label.get("value"))
        return LabelConfig(
            from_name=node.get("name", ""), to_name=to_name, text_key=value[1:], labels=labels
        )
    raise FormatError("labeling config has no <Labels> tag with toName naming a <Text> tag")


def text_sha(text: str) -> str:
    """A short digest of a task's text: predictions carry it, the webhook checks it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def parse_export(raw: str | bytes, *, text_key: str | None = None) -> list[Example]:
    """The annotated tasks of a Label Studio JSON export (a list of tasks, or one task).

    Each task gives its latest submitted (not cancelled) annotation; tasks without one are left
    out (unlabelled, not "no entity"). Raises :class:`FormatError` naming the task and result.
    """
    return [example for _, example in annotated_tasks(raw, text_key=text_key)]


def annotated_tasks(raw: str | bytes, *, text_key: str | None = None) -> list[tuple[str, Example]]:
    """As :func:`parse_export`, each example with where it is in the file (``tasks[3] (id 17)``)."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"not JSON: {exc}") from exc
    tasks = [data] if isinstance(data, dict) else data
    if not isinstance(tasks, list):
        raise FormatError("expected a JSON list of tasks")
    found = []
    for index, task in enumerate(tasks):
        where = f"tasks[{index}]"
        if isinstance(task, dict) and task.get("id") is not None:
            where += f" (id {task['id']})"
        example = task_example(task, where, text_key=text_key)
        if example is not None:
            found.append((where, example))
    if not found:
        raise FormatError(f"none of its {len(tasks)} task(s) has a submitted annotation")
    return found


def task_text(task: Any, where: str, text_key: str | None = None) -> str:
    """The text of a task: ``data[text_key]``; without a key, ``data["text"]`` or the only
    string in ``data``."""
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise FormatError(f"{where}: a task is an object with a 'data' object")
    data = task["data"]
    if text_key is None:
        strings = [k for k, v in data.items() if isinstance(v, str)]
        if DEFAULT_TEXT_KEY in data:
            text_key = DEFAULT_TEXT_KEY
        elif len(strings) == 1:
            text_key = strings[0]
        else:
            raise FormatError(
                f"{where}.data has no 'text' key and not exactly one string field "
                f"(keys: {sorted(data)}); name the key with text_key"
            )
    text = data.get(text_key)
    if not isinstance(text, str):
        raise FormatError(f"{where}.data.{text_key}: expected the text as a string")
    return text


def task_example(task: Any, where: str, *, text_key: str | None = None) -> Example | None:
    """A task's latest submitted annotation as an :class:`Example`; None if it has none."""
    text = task_text(task, where, text_key)
    annotations = task.get("annotations", task.get("completions")) or []
    if not isinstance(annotations, list):
        raise FormatError(f"{where}.annotations: expected a list")
    chosen = None
    for position, annotation in enumerate(annotations):
        if not isinstance(annotation, dict):
            raise FormatError(f"{where}.annotations[{position}]: expected an object")
        if not annotation.get("was_cancelled"):
            chosen = position
    if chosen is None:
        return None
    results = annotations[chosen].get("result") or []
    spans = spans_from_results(text, results, f"{where}.annotations[{chosen}]")
    return Example(text=text, entities=spans)


def spans_from_results(text: str, results: Any, where: str) -> list[Span]:
    """The ``labels`` results of an annotation or a prediction as spans of ``text``; results of
    other types (choices, relations, text areas) are ignored."""
    if not isinstance(results, list):
        raise FormatError(f"{where}.result: expected a list")
    spans = []
    for position, result in enumerate(results):
        here = f"{where}.result[{position}]"
        if not isinstance(result, dict):
            raise FormatError(f"{here}: expected an object")
        if result.get("type") != "labels":
            continue
        value = result.get("value")
        if not isinstance(value, dict):
            raise FormatError(f"{here}.value: expected an object")
        labels = value.get("labels")
        if not isinstance(labels, list) or len(labels) != 1:
            raise FormatError(
                f"{here}.value.labels: expected exactly one label per span; got {labels!r}"
            )
        surface = value.get("text")
        if isinstance(surface, str) and isinstance(value.get("start"), int):
            converted = _code_point_offsets(text, value["start"], value.get("end"), surface)
            if converted is not None:
                spans.append(make_span(text, *converted, labels[0], f"{here}.value"))
                continue
        span = make_span(text, value.get("start"), value.get("end"), labels[0], f"{here}.value")
        if isinstance(surface, str):  # fits neither reading
            raise FormatError(
                f"{here}.value: text[{span.start}:{span.end}] is {span.surface(text)!r}, not "
                f"value.text {surface!r} (did the task's text change after it was labelled?)"
            )
        spans.append(span)
    return spans


def _code_point_offsets(text: str, start: int, end: object, surface: str) -> tuple[int, int] | None:
    """(start, end) in code points where ``value.text`` is found there, reading the offsets as
    code points or, failing that, as UTF-16 units (an export of an older Label Studio)."""
    if not isinstance(end, int) or isinstance(end, bool) or isinstance(start, bool):
        return None
    if 0 <= start < end <= len(text) and text[start:end] == surface:
        return start, end
    converted = _utf16_to_code_points(text, start, end)
    if converted is not None and text[converted[0] : converted[1]] == surface:
        return converted
    return None


def _utf16_to_code_points(text: str, start: int, end: int) -> tuple[int, int] | None:
    found: dict[int, int] = {}
    units = 0
    for index, char in enumerate(text):
        found.setdefault(units, index)
        units += 2 if ord(char) > 0xFFFF else 1
    found.setdefault(units, len(text))
    if start in found and end in found:
        return found[start], found[end]
    return None


def results_for(
    text: str,
    spans: Iterable[Span],
    config: LabelConfig,
    *,
    scores: Sequence[float] | None = None,
    meta: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """``labels`` results of ``spans`` (their ``type`` is written as the label)."""
    results = []
    for index, span in enumerate(spans):
        result: dict[str, Any] = {
            "id": f"nerve-{index}",
            "from_name": config.from_name,
            "to_name": config.to_name,
            "type": "labels",
            "value": {
                "start": span.start,
                "end": span.end,
                "text": text[span.start : span.end],
                "labels": [span.type],
            },
        }
        if scores is not None:
            result["score"] = scores[index]
        if meta:
            result["meta"] = dict(meta)
        results.append(result)
    return results


def to_tasks(
    examples: Iterable[Example], config: LabelConfig | None = None
) -> list[dict[str, Any]]:
    """Tasks with one annotation each, ready for Label Studio's import (and :func:`parse_export`)."""
    config = config or LabelConfig()
    tasks = []
    for example in examples:
        task: dict[str, Any] = {
            "data": {config.text_key: example.text},
            "annotations": [{"result": results_for(example.text, example.entities, config)}],
        }
        if example.id is not None:
            task["meta"] = {"nerve_example_id": example.id}
        tasks.append(task)
    return tasks


def dump_tasks(examples: Iterable[Example], config: LabelConfig | None = None) -> str:
    return json.dumps(to_tasks(examples, config), ensure_ascii=False, indent=1)
