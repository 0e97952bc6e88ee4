"""The AI consultant behind ``honua-ai`` (= ``honua ai``).

Offline first: every command works without a model. What the assistant proposes is
written as ordinary YAML files, then validated and planned like any other change
(plans carry ``provenance: ai``), so policies and reviews apply to it as to a human's.

* :mod:`.llm` – the only place that imports ``litellm`` (extra ``ai``), lazily, and
  only when ``HONUA_AI_MODEL`` is set; nothing else here needs a network.
* :mod:`.propose` – ``propose layer``: introspect a table, write the Layer files.
* :mod:`.gitops` – put a proposal on a git branch (plumbing: HEAD and index untouched).
* :mod:`.migrations` – ``migrate plan``: the seed's per-environment deployment block.
* :mod:`.explain` – ``explain PLAN``: a plain-language explanation of a saved plan.
* :mod:`.schedule` – ``schedule migration``: deployment windows, the recorded event.
* :mod:`.chat` – ``chat``: offline intents, free text to a model when configured.
* :mod:`.router` – what an offline request names, resolved against the live catalog; refused unless understood whole.
* :mod:`.masking` – no secret to a model or the history: resolved secrets registered, typed ones masked by shape.
* :mod:`.session` – one chat conversation: turns, history, the model's tool calls dispatched.
* :mod:`.assistant`, :mod:`.tools` – the model chooses one tool; arguments validated, errors sent back.
* :mod:`.changes` – a file tool's change worked out and checked by the loader before anything is written.
* :mod:`.gate` – write, validate, plan every environment, show, ``Continue?``, commit on a branch.
* :mod:`.briefing` – what the model is told about the project for one request, within a budget.
* :mod:`.recovery` – ``disaster-recovery``: the analysis shown before ``recover``.
"""

from __future__ import annotations

AI_ACTOR = "ai-consultant"
"""``createdBy`` of generated files and the actor of AI-provenance plans."""

__all__ = ["AI_ACTOR"]
