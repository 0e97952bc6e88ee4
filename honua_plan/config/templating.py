"""``{{env}}`` templating (jinja2, strict undefined) for paths, SQL and env var names.

Only strings that contain ``{{`` or ``{%`` go through jinja2, so the common case costs
nothing; compiled templates are cached.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2


class TemplateProblem(ValueError):
    """A template that does not compile or names an unknown variable."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
    )


@lru_cache(maxsize=4096)
def _compile(text: str) -> jinja2.Template:
    import jinja2

    try:
        return _env().from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(f"template error: {exc.message}", exc.lineno) from None


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def render(text: str, variables: dict[str, Any]) -> str:
    """Render ``text`` with ``variables``; plain text is returned unchanged."""
    if not is_template(text):
        return text
    import jinja2

    template = _compile(text)
    try:
        return template.render(**variables)
    except jinja2.UndefinedError as exc:
        raise TemplateProblem(f"template error: {exc.message}") from None


def variables_for(environment: str, project: str = "") -> dict[str, Any]:
    return {"env": environment, "environment": environment, "project": project}
