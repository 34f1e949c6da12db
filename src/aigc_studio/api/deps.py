"""Dependencies injected into routes; tests may swap them through ``app.dependency_overrides``."""

from fastapi import Request

from ..studio import Studio


def get_studio(request: Request) -> Studio:
    return request.app.state.studio
