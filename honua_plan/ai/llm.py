"""Model access: the only module that imports ``litellm`` (optional extra ``ai``).

A model is used only when both hold: ``litellm`` is importable and ``HONUA_AI_MODEL``
names a model (any litellm model string, e.g. ``gpt-4o-mini`` or
``ollama/llama3``). Availability is checked with :func:`importlib.util.find_spec`,
which does not import the package; ``litellm`` is imported inside :func:`complete`.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

from honua_plan.errors import AIUnavailable
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


def complete(system: str, user: str, *, max_tokens: int = 800) -> str:
    """Ask the configured model; raises :class:`AIUnavailable` when there is none or it fails.

    Both prompts are redacted first: no registered secret leaves the machine.
    """
    st = status()
    if not st.available or st.model is None:
        raise AIUnavailable(f"no model available: {st.why}")
    try:
        import litellm  # the one import of the optional extra
    except ImportError as exc:  # pragma: no cover - find_spec said it was there
        raise AIUnavailable(f"litellm cannot be imported: {exc}") from None
    timeout = float(os.environ.get(TIMEOUT_ENV, "60") or 60)
    try:
        response = litellm.completion(
            model=st.model,
            messages=[{"role": "system", "content": redact(system)},
                      {"role": "user", "content": redact(user)}],
            max_tokens=max_tokens,
            timeout=timeout,
        )
        text = response.choices[0].message.content  # litellm mirrors the OpenAI shape
    except Exception as exc:  # any provider error: the caller falls back to offline
        raise AIUnavailable(redact(f"the model {st.model} did not answer: {type(exc).__name__}: {exc}")) from None
    return redact(str(text or "").strip())
