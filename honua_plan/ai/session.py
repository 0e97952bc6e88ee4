"""One ``honua-ai chat`` conversation: requests in, proposals through the gate, history kept.

Offline, a request the router (:func:`honua_plan.ai.chat.parse_intent`) reads with confidence
runs ``propose layer``; anything else is answered with what works offline. With a model, the
model chooses the tool; its call is validated by the tool's model, then by the loader with
the change applied (:mod:`honua_plan.ai.changes`), errors going back for repair; an accepted
proposal goes through :mod:`honua_plan.ai.gate` (or ``propose layer``'s same steps) and is
kept only after ``Continue? (yes/no)`` (``--yes``). Every turn is remembered, so the next
request reaches the model with the conversation so far.

Exit codes of a turn: 0 done (or answered), 1 a requested action failed, 2 nothing was done.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from honua_plan.ai.assistant import History

if TYPE_CHECKING:
    from pydantic import BaseModel

    from honua_plan.ai.changes import Change
    from honua_plan.ai.chat import Intent
    from honua_plan.ai.router import Understanding
    from honua_plan.context import Context
    from honua_plan.providers.postgis.facts import DatabaseFacts


def split_requests(text: str) -> list[str]:
    """One request per line. A line that starts with white space continues the request before
    it (as the seed's two-line request is written), and so does every line while a double
    quote is open."""
    out: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if out and (line[:1].isspace() or out[-1].count('"') % 2 == 1):
            out[-1] += "\n" + line
        else:
            out.append(line)
    return out


def worst(codes: list[int]) -> int:
    """The exit code of several turns: 1 when one failed, else 2 when one did nothing, else 0."""
    return 1 if 1 in codes else 2 if 2 in codes else 0


def understand_request(context: Context, facts: DatabaseFacts | None, text: str) -> tuple[Understanding | None, str | None]:
    """What the router understood of ``text``, resolved against the first environment's live
    catalog (``facts``) and the project; (None, why) when that catalog could not be read."""
    from honua_plan.ai.router import catalog_for, understand

    first = context.load()[0]
    envs = list(first.project.spec.environments)
    if facts is None:
        return None, (f"I cannot check the table: the {envs[0]} database could not be read, and a "
                      "proposal is made only of a live table.")
    return understand(text, catalog_for(facts, first.services, envs, f"the {envs[0]} database")), None


class ChatSession:
    """The conversation: its context, its options and its history (see the module doc)."""

    def __init__(self, context: Context, *, service: str | None = None, yes: bool = False,
                 interactive: bool = False) -> None:
        self.context = context
        self.service = service
        self.yes = yes
        self.interactive = interactive
        self.history = History()
        self._prepared: Change | None = None
        self._facts: DatabaseFacts | None = None
        self._facts_read = False
        self._secrets_registered = False
        self._told_masked = False

    # ------------------------------------------------------------------ driving

    def run_text(self, text: str) -> int:
        """Every request of ``text`` (stdin that is not a terminal), in order; the worst code."""
        from honua_plan.ai import llm
        from honua_plan.ai.chat import EXIT_WORDS, HELP

        requests = split_requests(text)
        if not requests or requests[0].strip().lower() in EXIT_WORDS:
            self.context.console.print("AI: " + HELP.format(why=llm.status().why))
            return 2
        codes = []
        for request in requests:
            if request.strip().lower() in EXIT_WORDS:
                break
            if len(requests) > 1:
                from honua_plan.ai.masking import mask

                self._register_secrets()
                self.context.console.print(f"User: {mask(request.strip())}")
            codes.append(self.turn(request))
        return worst(codes)

    def ask(self) -> str:
        """``Continue? (yes/no)``: "yes" (or --yes), "no", or "not-interactive" (never prompts
        without a terminal)."""
        if self.yes:
            return "yes"
        if not sys.stdin.isatty():
            return "not-interactive"
        answer = click.prompt("Continue? (yes/no)", default="", show_default=False)
        return "yes" if answer.strip().lower() in ("yes", "y") else "no"

    def _ask_layer(self) -> str:
        self.context.console.print("Nothing was approved: the approvals these plans need are given by people "
                                   "(honua approve PLAN --by NAME).")
        return self.ask()

    def turn(self, text: str) -> int:
        """Answer one request and remember it; its exit code. What looks like a secret in it is
        masked first (:mod:`honua_plan.ai.masking`): neither the model, the router nor the
        history ever see it."""
        from honua_plan.ai.masking import mask

        text = self.masked(text)
        code, result = self._turn(text)
        self.history.add(text.strip(), mask(result))
        return code

    def _register_secrets(self) -> None:
        if not self._secrets_registered:
            from honua_plan.ai.masking import register_resolved

            self._secrets_registered = True
            register_resolved(self.context)

    def masked(self, text: str) -> str:
        """``text`` with secrets masked; the user is told (once a session) that something was."""
        from honua_plan.ai.masking import MASKED, mask_typed

        self._register_secrets()
        text, found = mask_typed(text)
        if found and not self._told_masked:
            self._told_masked = True
            self.context.console.print(
                f"AI: your message holds what looks like a secret ({', '.join(found)}): I replaced it with "
                f"{MASKED}; it is not sent to any model nor kept in this conversation.")
        return text

    def _turn(self, text: str) -> tuple[int, str]:
        from honua_plan.ai import llm
        from honua_plan.ai.chat import HELP, Intent, parse_intent
        from honua_plan.errors import HonuaError

        con = self.context.console
        intent = parse_intent(text)
        if intent.kind == "exit":
            return 0, "(nothing)"
        if intent.kind == "help":
            con.print("AI: " + HELP.format(why=llm.status().why))
            return 0, "(engine) listed what works offline"
        if intent.kind == "propose-layer":
            understood, why = understand_request(self.context, self.facts(), text)
            if understood is None or not understood.ok:
                if llm.status().available:  # the model reads what the router could not
                    return self._model(text)
                said = why or (understood.summary() if understood is not None else "")
                con.print(f"AI: {said} Nothing was done: a proposal is made only of a request understood whole.")
                con.print("    Name the live table (table NAME, or schema.table; a table named like a word, "
                          "e.g. as, in quotes or as public.as), one table per request, and an existing service.")
                return 2, f"(engine) not acted on: {said}"
            con.print(f"AI: {understood.summary()}")
            intent = Intent("propose-layer", table=understood.table, service=understood.service,
                            name=understood.name, environments=understood.environments)
            try:
                return self._propose(intent)
            except HonuaError as exc:
                con.print("")
                con.print(f"AI: I could not create the proposal: {exc.message}")
                if exc.details:
                    con.print(exc.details)
                if exc.hint:
                    con.print(f"    Hint: {exc.hint}")
                return 1, f"(engine) the layer proposal failed: {exc.message}"
        st = llm.status()
        if st.available:
            return self._model(text)
        con.print(f"AI: I did not act on this request: {intent.reason}.")
        con.print("AI: " + HELP.format(why=st.why))
        return 2, f"(engine) not acted on offline: {intent.reason}"

    # ------------------------------------------------------------------ the model

    def facts(self) -> DatabaseFacts | None:
        """The first environment's live catalog, read once per session (None when unreachable)."""
        from honua_plan.errors import HonuaError

        if not self._facts_read:
            self._facts_read = True
            env = self.context.load()[0].project.spec.environments[0]
            try:
                self._facts = self.context.read_facts(env)
            except HonuaError as exc:
                self.context.console.warn(f"the {env} database was not read ({exc.message}): "
                                          "the model gets no live columns")
        return self._facts

    def check(self, tool: str, args: BaseModel, raw: Mapping[str, Any]) -> list[str]:
        """What the loader (or the live catalog) finds wrong with a validated call."""
        from honua_plan.ai.changes import prepare
        from honua_plan.ai.tools import ProposeLayer

        self._prepared = None
        if isinstance(args, ProposeLayer):
            first = self.context.load()[0]
            if args.service is not None and args.service not in first.services:
                return [f"service: there is no service {args.service!r} (services: {', '.join(first.services)})"]
            facts = self.facts()
            if facts is not None and facts.table(args.table) is None:
                spatial = sorted(t.qualified_name for t in facts.tables if t.geometry_columns)[:20]
                return [f"table: {args.table} does not exist in the {first.environment} database "
                        f"(spatial tables: {', '.join(spatial) or 'none'})"]
            return []
        if tool in ("propose_migration", "remove_resource", "edit_resource"):
            self._prepared, problems = prepare(self.context.root, tool, args, raw)
            return problems
        return []

    def _model(self, text: str) -> tuple[int, str]:
        from honua_plan.ai import llm
        from honua_plan.ai.assistant import decide
        from honua_plan.ai.briefing import briefing
        from honua_plan.ai.chat import Intent, project_summary
        from honua_plan.ai.tools import Answer, AskUser, ProposeLayer
        from honua_plan.errors import AIModelFailed, AIUnavailable, HonuaError

        con = self.context.console
        con.print(f"AI: asking {llm.status().model or '?'}…")
        try:
            data = briefing(self.context, text, facts=self.facts(), summary=project_summary(self.context))
            outcome = decide(text, data, history=self.history, check=self.check,
                             on_retry=lambda why: con.warn(why))
        except (AIUnavailable, AIModelFailed) as exc:
            con.print(f"AI: {exc.message}; nothing was changed.")
            return 1, f"(engine) the model failed: {exc.message}"
        args = outcome.args
        if args is None:
            con.print(f"AI: the model's request was still invalid after {outcome.turns} turns; nothing was done:")
            for problem in outcome.problems:
                con.print(f"  - {problem}")
            return 1, "(engine) the proposal was still invalid, nothing was done: " + "; ".join(outcome.problems)
        if isinstance(args, Answer):
            text = llm.incoming(args.text)
            con.print("AI (the model's words; nothing was validated, planned or changed): " + text)
            if outcome.truncated:
                con.warn("the model's answer was cut off at its token limit")
            return 0, text
        if isinstance(args, AskUser):
            question = llm.incoming(args.question)
            con.print(f"AI (the model asks): {question}")
            return 2, question
        try:
            if isinstance(args, ProposeLayer):
                intent = Intent("propose-layer", table=args.table, service=args.service, name=args.name)
                return self._propose(intent, model=outcome.model)
            assert self._prepared is not None
            return self._gate(self._prepared, outcome.model)
        except HonuaError as exc:
            con.print(f"AI: I could not create the proposal: {exc.message}")
            if exc.details:
                con.print(exc.details)
            return 1, f"(engine) the proposal failed: {exc.message}"

    def _gate(self, change: Change, model: str) -> tuple[int, str]:
        from honua_plan.ai.gate import print_result, run_gate

        con = self.context.console
        con.print(f"AI: the model proposes: {change.title}. Validating and planning it before anything is kept.")
        con.print("")
        result = run_gate(self.context, change, model=model, ask=self.ask)
        con.print("")
        print_result(con, result)
        plans = "; ".join(f"{ep.environment}: " + (f"risk {ep.plan.risk}, {ep.plan.approvals_required} approval(s)"
                                                   if ep.plan is not None else "nothing to plan")
                          for ep in result.plans)
        if result.outcome == "plan-failed":
            return 1, f"(engine) {change.title}: not proposed, it could not be planned in {', '.join(result.failed)}"
        where = (f"committed on branch {result.branch}" if result.outcome == "committed" else
                 "left in the working tree" if result.outcome == "working-tree" else "not kept (not confirmed)")
        return (0 if result.done else 2), f"(engine) {change.title}: planned ({plans}); {where}"

    # ------------------------------------------------------------------ propose layer

    def _propose(self, intent: Intent, *, model: str | None = None) -> tuple[int, str]:
        """The ``propose layer`` flow for a table; a model's proposal is asked about first."""
        from honua_plan.ai import gitops
        from honua_plan.ai.propose import (
            default_branch,
            layer_name_for,
            print_proposal,
            propose_layer,
            title_for,
        )

        con = self.context.console
        states = self.context.load()
        first = states[0]
        assert intent.table is not None
        table = intent.table if "." in intent.table else f"public.{intent.table}"
        published = [(d.environment, lyr) for d in states for lyr in d.layers.values()
                     if lyr.spec.storage.qualified_table == table]
        if published and intent.name is None:
            env, lyr = published[0]
            src = first.source(lyr.address) if env == first.environment else None
            where = f" ({src.path})" if src is not None else ""
            con.print(f"AI: {table} is already published as {lyr.collection_id} in {env}{where}.")
            con.print(f"    To publish it again under another name, say: add a layer named NAME for the table {table}")
            return 0, f"(engine) {table} is already published as {lyr.collection_id}"
        services = list(first.services)
        chosen = intent.service if intent.service in services else self.service
        if not services:
            con.print(f"AI: the {first.environment} environment has no service yet: create one under "
                      f"environments/{first.environment}/services/ first.")
            return 1, "(engine) no service to put a layer in"
        if intent.service and intent.service not in services:
            con.print(f"AI: there is no service '{intent.service}' in {first.environment} "
                      f"(services: {', '.join(services)}).")
        name = intent.name or layer_name_for(table)
        con.print(f"AI: I'll help you add the {title_for(name).lower()} layer. Let me create a proposal.")
        if chosen is None:
            if self.interactive and len(services) > 1:
                chosen = click.prompt(f"AI: Which service should it belong to? ({', '.join(services)})",
                                      default=services[0])
            else:
                chosen = services[0]
                which = "the only service" if len(services) == 1 else "the project's first service"
                con.print(f"AI: I'll put it in the service '{chosen}' ({which}).")
        con.print("")
        branch = default_branch(name) if gitops.is_repository(self.context.root) else None
        if branch is None:
            con.print("(not a git repository: the files go to the working tree, no branch)")
        else:
            branch = gitops.free_branch(self.context.root, branch)
        proposal = propose_layer(self.context, table=table, service=chosen, name=intent.name, branch=branch,
                                 environments=intent.environments or None, model=model or "offline",
                                 ask=self._ask_layer)  # offline too: nothing is kept before Continue?
        if proposal.declined is not None:
            from honua_plan.ai.gate import print_outcome

            con.print("")
            for w in proposal.warnings:
                con.warn(w, indent=2)
            if proposal.saved_plans:
                con.print(f"Plans saved for review: {', '.join(proposal.saved_plans)}")
            print_outcome(con, proposal.declined, failed=tuple(proposal.unplanned))
            if proposal.declined == "plan-failed":
                return 1, (f"(engine) layer {chosen}::{name} from {table}: not proposed, it could not be planned in "
                           + ", ".join(proposal.unplanned))
            return 2, f"(engine) layer {chosen}::{name} from {table}: planned, not kept (not confirmed)"
        print_proposal(con, proposal)
        return 0, (f"(engine) proposed layer {chosen}::{proposal.name} from {table}"
                   + (f" on branch {proposal.branch}" if proposal.branch else " in the working tree"))
