"""Label Studio's SDK, run by the Label Studio venv's Python for tests/fixtures/labelstudio.py.

Reads one JSON request ``{url, token, op, args}`` on stdin, writes the answer as JSON on stdout.
Not a test module: nerve's venv has no ``label_studio_sdk``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from label_studio_sdk import LabelStudio


def setup_project(ls: LabelStudio, title: str, label_config: str, ml_url: str, key: str) -> Any:
    """A project with nerve as its ML backend (HTTP Basic: the API key is the password); the
    webhook Label Studio creates for the backend gets the key as a bearer header."""
    project = ls.projects.create(title=title, label_config=label_config)
    backend = ls.ml.create(
        project=project.id,
        url=ml_url,
        title="nerve",
        auth_method="BASIC_AUTH",
        basic_auth_user="nerve",
        basic_auth_pass=key,
    )
    hooks = []
    for hook in ls.webhooks.list(project=str(project.id)):
        if hook.url == ml_url.rstrip("/") + "/webhook":
            ls.webhooks.update(hook.id, headers={"Authorization": f"Bearer {key}"})
            hooks.append(hook.id)
    state = ls.ml.get(backend.id)
    return {
        "project": project.id,
        "ml_backend": backend.id,
        "state": state.state,
        "error": getattr(state, "error_message", None),
        "webhooks": hooks,
    }


def import_tasks(ls: LabelStudio, project: int, tasks: list[dict[str, Any]]) -> Any:
    done = ls.projects.import_tasks(project, request=tasks, return_task_ids=True)
    return {"task_ids": list(done.task_ids or [])}


def predict(ls: LabelStudio, project: int, task_ids: list[int]) -> Any:
    """Ask the project's ML backend for every task's prediction (the Data Manager's action)."""
    started = time.monotonic()
    ls.actions.create(
        id="retrieve_tasks_predictions",
        project=project,
        selected_items={"all": False, "included": task_ids},
    )
    predictions: dict[str, Any] = {}
    for task_id in task_ids:
        found = list(ls.predictions.list(task=task_id))
        predictions[str(task_id)] = [
            {"result": p.result, "score": p.score, "model_version": p.model_version} for p in found
        ]
    return {"predictions": predictions, "seconds": round(time.monotonic() - started, 1)}


def annotate(ls: LabelStudio, task: int, result: list[dict[str, Any]]) -> Any:
    annotation = ls.annotations.create(id=task, result=result, was_cancelled=False)
    return {"annotation": annotation.id}


def update_annotation(ls: LabelStudio, annotation: int, result: list[dict[str, Any]]) -> Any:
    ls.annotations.update(annotation, result=result)
    return {"annotation": annotation}


def update_task(ls: LabelStudio, task: int, data: dict[str, Any]) -> Any:
    ls.tasks.update(str(task), data=data)
    return {"task": task}


def webhook_payload(ls: LabelStudio, project: int, task: int, annotation: int) -> Any:
    """What Label Studio's webhook sends for an annotation, from the SDK's objects."""
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": project, "label_config": ls.projects.get(project).label_config},
        "task": {"id": task, "data": ls.tasks.get(str(task)).data},
        "annotation": ls.annotations.get(annotation).dict(),
    }


OPS = {
    "setup_project": setup_project,
    "import_tasks": import_tasks,
    "predict": predict,
    "annotate": annotate,
    "update_annotation": update_annotation,
    "update_task": update_task,
    "webhook_payload": webhook_payload,
}


def main() -> None:
    request = json.load(sys.stdin)
    # Predictions run nerve on every task inside one call: allow a loaded CI machine time.
    ls = LabelStudio(base_url=request["url"], api_key=request["token"], timeout=600)
    answer = OPS[request["op"]](ls, **request["args"])
    json.dump(answer, sys.stdout, default=str)


if __name__ == "__main__":
    main()
