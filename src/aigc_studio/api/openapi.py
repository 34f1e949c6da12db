"""What ``/openapi.json`` says about errors: the bodies each API really sends, per status code.

Every error leaves the server through ``app.error_response``, in one of two shapes: OpenAI's
``{"error": {message, type, param, code}}`` under ``/v1``, ``/api`` and ``/health``, and A1111's
``{"error", "detail", "body", "errors"}`` under ``/sdapi/v1``. The routers declare, per operation, the
status codes it can answer with (``errors``); ``drop_default_422`` removes what FastAPI adds on its
own — a 422 with its ``HTTPValidationError`` body, whose ``detail`` is a list — since the server never
sends that body: a request that fails validation gets the path's shape (400 with OpenAI's, 422 with
A1111's).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["A1111ErrorBody", "ErrorBody", "ErrorDetail", "drop_default_422", "errors"]


class ErrorDetail(BaseModel):
    model_config = ConfigDict(title="ErrorDetail")

    message: str = Field(description="What was wrong and what is allowed, e.g. 'temperature: ... got 3'.")
    type: str = Field(description="invalid_request_error for a client's mistake; server_error for 5xx.")
    param: str | None = Field(description="The request field the error is about, where there is one.")
    code: str | None = Field(
        description="A machine-readable reason where there is one: model_not_found, not_found, too_large, "
        "context_length_exceeded, model_load_failed, interrupted, method_not_allowed, model_unavailable, "
        "invalid_template, template_not_found, template_exists, template_is_shipped, already_voted, battle_failed, "
        "conflict, unsupported_media_type."
    )


class ErrorBody(BaseModel):
    """The error body under /v1, /api and /health (OpenAI's shape)."""

    model_config = ConfigDict(title="Error")

    error: ErrorDetail


class A1111ErrorBody(BaseModel):
    """The error body under /sdapi/v1 (A1111's shape, from its modules/api/api.py)."""

    model_config = ConfigDict(title="A1111Error")

    error: str = Field(description="The kind of error: InvalidRequest, ValidationError, ModelNotFound, ...")
    detail: str = Field(description="What was wrong and what is allowed; every refused field is named.")
    body: str = Field(description="Always empty here (A1111 puts the request body there for some errors).")
    errors: str = Field(description="The same text as detail.")


def errors(shape: type[BaseModel], codes: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status code it can answer with, the body ``shape`` and why."""
    return {code: {"model": shape, "description": why} for code, why in codes.items()}


def drop_default_422(schema: dict[str, Any]) -> dict[str, Any]:
    """Remove FastAPI's own 422 (body ``HTTPValidationError``) from every operation, and its schemas.

    In place; returns ``schema``. A 422 a router declares itself (A1111's, a model that cannot load) has
    another body and stays."""
    default = "#/components/schemas/HTTPValidationError"
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {}) if isinstance(operation, dict) else {}
            body = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if body.get("$ref") == default:
                del responses["422"]
    components = schema.get("components", {}).get("schemas", {})
    if default not in str(schema.get("paths", {})):
        components.pop("HTTPValidationError", None)
        if "#/components/schemas/ValidationError" not in str(components):
            components.pop("ValidationError", None)
    return schema


def document_sign_in(schema: dict[str, Any], open_paths: frozenset[str]) -> dict[str, Any]:
    """With auth on (api/auth.py): the ways to sign in as security schemes, and on every operation but
    those of ``open_paths`` the 401 it then answers without them, in its path's error shape. In place."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(
        {
            "apiKey": {"type": "http", "scheme": "bearer", "description": "An API key: `aigc keys create`."},
            "password": {"type": "http", "scheme": "basic", "description": "A user's name and password."},
        }
    )
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            if path in open_paths:
                operation["security"] = []
                continue
            operation["security"] = [{"apiKey": []}, {"password": []}]
            shape = A1111ErrorBody.__name__ if path.startswith("/sdapi/") else ErrorBody.__name__
            operation.setdefault("responses", {})["401"] = {
                "description": "No API key, password or session, or one that is wrong, expired or revoked "
                "(the message says which).",
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{shape}"}}},
            }
    return schema
