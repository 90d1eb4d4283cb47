"""JSON Schema files of the wire records, for SDK authors."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.models import (
    Alias,
    Command,
    CompanyDelta,
    Content,
    DeadLetter,
    Feedback,
    Identify,
    Page,
    Track,
)

EXPORTED: dict[str, type[BaseModel]] = {
    "identify": Identify,
    "track": Track,
    "page": Page,
    "feedback": Feedback,
    "content": Content,
    "alias": Alias,
    "command": Command,
    "dlq": DeadLetter,
    "company-delta": CompanyDelta,
}


def export_json_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, model in EXPORTED.items():
        path = directory / f"{name}.schema.json"
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        path.write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
        paths.append(path)
    return paths
