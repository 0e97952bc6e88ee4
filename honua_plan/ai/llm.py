"""Model access: the only module that imports ``litellm`` (optional extra ``ai``).

A model is used only when both hold: ``litellm`` is importable and ``HONUA_AI_MODEL``
names a model (any litellm model string, e.g. ``gpt-4o-mini`` or
``ollama/llama3``). Availability is checked with :func:`importlib.util.find_spec`,
which does not import the package; ``litellm`` is imported inside :func:`complete`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from honua_plan.errors import AIModelFailed, AIUnavailable, UsageError
from honua_plan.secrets import redact

MODEL_ENV = "HONUA_AI_MODEL"
TIMEOUT_ENV = "HONUA_AI_TIMEOUT"


@dataclass(frozen=True)
class ModelStatus:
    available: bool
    model: str | None
    why: str  # for people: what is missing, or which model is used

    @property
    def mode_line(self) -> str:
        if self.available:
            return f"Mode: model {self.model} (litellm)"
        return f"Mode: offline ({self.why})"


def litellm_installed() -> bool:
    try:
        return importlib.util.find_spec("litellm") is not None
    except (ImportError, ValueError):
        return False


def status() -> ModelStatus:
    """Whether a model can be asked, and why not."""
    model = os.environ.get(MODEL_ENV, "").strip() or None
    installed = litellm_installed()
    if model and installed:
        return ModelStatus(True, model, f"model {model}")
    if not installed and not model:
        why = f"install honua-plan[ai] and set {MODEL_ENV} to use a model"
    elif not installed:
        why = f"{MODEL_ENV} is set but litellm is not installed: pip install 'honua-plan[ai]'"
    else:
        why = f"litellm is installed but {MODEL_ENV} is not set"
    return ModelStatus(False, None, why)


DEFAULT_TIMEOUT_S = 30.0
# what leaves the machine never holds a password, whoever typed it: a registered secret is
# redacted, and so is anything shaped like one (password=…, postgresql://user:…@host)
_PASSWORD_FIELD = re.compile(r"(?i)\b(password|passwd|pwd|secret|api[_-]?key|token)(\s*[=:]\s*)(\S+)")
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@\s]+)(@)")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Answer:
    """A model's answer: its text (control characters removed) and whether it was cut."""

    text: str
    model: str
    truncated: bool = False


def outgoing(text: str) -> str:
    """``text`` as it may leave the machine: registered secrets and secret-shaped values hidden
    (:func:`honua_plan.ai.masking.mask_typed`)."""
    from honua_plan.ai.masking import mask

    text = redact(text)
    text = _PASSWORD_FIELD.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    return mask(_URL_PASSWORD.sub(lambda m: f"{m.group(1)}***{m.group(3)}", text))


def incoming(text: str) -> str:
    """A model's words as they may be shown or kept: cleaned, and no secret in them."""
    return outgoing(clean(text))


_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")


def clean(text: str) -> str:
    """A model's text as it may be shown: no terminal escape sequences, control or bidi
    characters (newlines and tabs kept)."""
    return _CONTROL.sub("", _ESCAPES.sub("", text))


def timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (0 < value < 3600):
        raise UsageError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds between 0 and 3600")
    return value


def _litellm() -> Any:
    """litellm, quietly: its cost map from the package (no download at import) and no banner."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import litellm  # the one import of the optional extra
    except ImportError as exc:  # pragma: no cover - find_spec said it was there
        raise AIUnavailable(f"litellm cannot be imported: {exc}") from None
    litellm.suppress_debug_info = True
    litellm.telemetry = False
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx", "openai"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return litellm


def complete(system: str, user: str, *, max_tokens: int = 800,
             on_retry: Callable[[str], None] | None = None) -> Answer:
    """Ask the configured model: one call, and one visible retry (``on_retry`` is told why)
    when it fails or does not answer within ``HONUA_AI_TIMEOUT`` (30 s).

    Raises :class:`AIModelFailed` when both fail, :class:`AIUnavailable` when there is no
    model. Both prompts pass :func:`outgoing` first: no secret leaves the machine.
    """
    st = status()
    if not st.available or st.model is None:
        raise AIUnavailable(f"no model available: {st.why}")
    limit = timeout_s()
    litellm = _litellm()
    messages = [{"role": "system", "content": outgoing(system)}, {"role": "user", "content": outgoing(user)}]
    failure = ""
    for attempt in (1, 2):
        try:
            response = litellm.completion(model=st.model, messages=messages, max_tokens=max_tokens,
                                          timeout=limit, max_retries=0, num_retries=0)
            choice = response.choices[0]  # litellm mirrors the OpenAI shape
            text = incoming(str(choice.message.content or "")).strip()
            return Answer(text, st.model, truncated=getattr(choice, "finish_reason", None) == "length")
        except Exception as exc:  # any provider error, a timeout, a malformed answer
            failure = redact(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": "))
            if attempt == 1 and on_retry is not None:
                on_retry(f"the model {st.model} did not answer ({failure}); retrying once")
    raise AIModelFailed(f"the model {st.model} failed: {failure}",
                        hint=f"check the model's endpoint and key, or raise {TIMEOUT_ENV} (now {limit:g} s)")


@dataclass(frozen=True)
class ToolCall:
    """A model's request to run one tool: its name and its arguments (JSON text, unvalidated)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Reply:
    """One model turn: a tool call, or words."""

    model: str
    call: ToolCall | None = None
    text: str = ""
    truncated: bool = False


def converse(messages: list[dict[str, Any]], tools: list[dict[str, Any]], *, max_tokens: int = 800,
             on_retry: Callable[[str], None] | None = None) -> Reply:
    """One turn of a tool-using conversation (same timeout, retry, redaction and cleaning as
    :func:`complete`); ``messages`` are sent through :func:`outgoing`."""
    st = status()
    if not st.available or st.model is None:
        raise AIUnavailable(f"no model available: {st.why}")
    limit = timeout_s()
    litellm = _litellm()
    sent = [{**m, "content": outgoing(str(m["content"]))} if m.get("content") is not None else m
            for m in messages]
    failure = ""
    for attempt in (1, 2):
        try:
            response = litellm.completion(model=st.model, messages=sent, tools=tools, tool_choice="required",
                                          max_tokens=max_tokens, timeout=limit, max_retries=0, num_retries=0)
            choice = response.choices[0]
            truncated = getattr(choice, "finish_reason", None) == "length"
            calls = getattr(choice.message, "tool_calls", None) or []
            if calls:
                c = calls[0]
                return Reply(st.model, ToolCall(str(c.id), str(c.function.name), str(c.function.arguments or "")),
                             truncated=truncated)
            return Reply(st.model, text=incoming(str(choice.message.content or "")).strip(), truncated=truncated)
        except Exception as exc:
            failure = redact(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": "))
            if attempt == 1 and on_retry is not None:
                on_retry(f"the model {st.model} did not answer ({failure}); retrying once")
    raise AIModelFailed(f"the model {st.model} failed: {failure}",
                        hint=f"check the model's endpoint and key, or raise {TIMEOUT_ENV} (now {limit:g} s)")
