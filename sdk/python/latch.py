"""Write Latch workflows in Python.

A workflow module defines `class WitWorld(latch.Workflow)` with a `main(self, input)`
method: `input` is the run's JSON input (or the trigger request's data) as Python
values, and what `main` returns is the run's output. A run started by a trigger finds
the request in `self.request`. Raise `latch.Failure` to fail the run with a code. Build
the module into a component with componentize-py:

    componentize-py -d wit -w workflow componentize -p sdk/python -p <your dir> app -o app.wasm
"""

import inspect
import json
from typing import Any, Callable, List, Optional, Sequence

from componentize_py_types import Err, Ok
from wit_world import ModuleInfo, Start, Start_Api
from wit_world import NamedTrigger as WitNamedTrigger
from wit_world import Trigger as WitTrigger
from wit_world.imports import context, outbound, responses, steps, types, waits, webhooks


class Failure(Exception):
    """Fails the run (or reports a refused engine call) with a stable code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Fatal(Failure):
    """A failure of a step that a retry cannot mend: the step fails at once."""


def _unwrap(call):
    """Runs an engine call, turning its error into a `Failure`."""
    try:
        return call()
    except Err as e:
        raise Failure(e.value.code, e.value.message) from None


def _data(text: str) -> Any:
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


class Request:
    """A call that reached the run."""

    def __init__(self, wit: types.IncomingRequest):
        self.id = wit.id
        self.webhook = wit.webhook
        self.method = wit.method.name
        self.path = wit.path
        self.query = list(wit.query)
        self.headers = list(wit.headers)
        self.data = _data(wit.data)
        self.received_at_ms = wit.received_at_ms
        self.caller = _caller(wit.caller)

    def header(self, name: str) -> Optional[str]:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def respond(self, status: int, body: Any = None, headers: Optional[List[tuple]] = None) -> None:
        """Answers the caller of a webhook or trigger in manual response mode (JSON body)."""
        _unwrap(lambda: responses.respond(self.id, _json_response(status, body, headers)))


def _caller(wit: types.Caller) -> dict:
    """Who made a call, as the engine verified it: `{"type": "anonymous" | "url-key" |
    "api-key" | "signature"}`, with `name` and `roles` for an API key and `scheme` for a
    signature."""
    if isinstance(wit, types.Caller_ApiKey):
        return {"type": "api-key", "name": wit.value.name, "roles": list(wit.value.roles)}
    if isinstance(wit, types.Caller_Signature):
        return {"type": "signature", "scheme": wit.value.name.lower().replace("_", "-")}
    return {"type": "url-key" if isinstance(wit, types.Caller_UrlKey) else "anonymous"}


def _auth(url_key: bool, bearer: Optional[Sequence[str]]) -> types.Auth:
    if bearer is not None:
        return types.Auth_Bearer(list(bearer))
    return types.Auth_UrlKey() if url_key else types.Auth_None_()


def _json_response(status: int, body: Any, headers: Optional[List[tuple]]) -> types.Response:
    text = "" if body is None else json.dumps(body, separators=(",", ":"))
    pairs = list(headers or []) + ([("content-type", "application/json")] if text else [])
    return types.Response(status, pairs, text)


def _methods(names: Sequence[str]) -> List[types.Method]:
    return [types.Method[name.upper()] for name in names]


def _answer_mode(manual_ms: Optional[int], answer: Optional[types.Response]) -> types.ResponseMode:
    if manual_ms is not None:
        return types.ResponseMode_Manual(manual_ms)
    return types.ResponseMode_Automatic(answer or _json_response(202, {"accepted": True}, None))


class Webhook:
    """A URL owned by the run that external systems call."""

    def __init__(self, *, token: Optional[str] = None, methods: Sequence[str] = ("POST",), many: bool = False,
                 manual_ms: Optional[int] = None, url_key: bool = False, expires_in_ms: Optional[int] = None):
        """A single-use POST URL answered `202 {"accepted":true}`. A GET's query is its data;
        `many` takes calls until closed; `manual_ms` holds callers until the run responds
        (504 after that many milliseconds)."""
        auth = _auth(url_key, None)
        mode = _answer_mode(manual_ms, None)
        options = webhooks.WebhookOptions(
            token, _methods(methods), not many, auth, types.AuthFailure.ERROR, mode, expires_in_ms, None, None
        )
        hook = _unwrap(lambda: webhooks.create(options))
        self.id, self.token, self.url = hook.id, hook.token, hook.url

    def next(self, timeout_ms: Optional[int] = None) -> Optional[Request]:
        """The next call, or None when `timeout_ms` passed first. Raises Failure('closed')."""
        result = waits.next(self.id, timeout_ms)
        if isinstance(result, waits.NextResult_Request):
            return Request(result.value)
        if isinstance(result, waits.NextResult_Closed):
            raise Failure("closed", f"webhook {self.id} is closed")
        return None

    def close(self) -> None:
        webhooks.close(self.id)


class Timer:
    """For `select`: a durable timer this many milliseconds from now."""

    def __init__(self, ms: int):
        self.waitable = waits.Waitable_Timer(ms)


class Deadline:
    """For `select`: a durable timer at this moment (milliseconds since the Unix epoch)."""

    def __init__(self, unix_ms: int):
        self.waitable = waits.Waitable_Deadline(unix_ms)


class TriggerCall:
    """For `select`: the next call to the module's named trigger for this run
    (`/t/{module}/{name}?execution=<run id>|any|all`)."""

    def __init__(self, name: str):
        self.waitable = waits.Waitable_Trigger(name)


class Selected:
    """Which waitable given to `select` was first (`index`), and how: `request` is the
    call that arrived, or None when a timer fired (`timed_out`) or a webhook closed."""

    def __init__(self, wit: waits.Selected):
        self.index = wit.index
        self.request = Request(wit.outcome.value) if isinstance(wit.outcome, waits.NextResult_Request) else None
        self.timed_out = isinstance(wit.outcome, waits.NextResult_TimedOut)
        self.closed = isinstance(wit.outcome, waits.NextResult_Closed)


def select(*waitables: Any) -> Selected:
    """Waits for the first of several webhooks, `TriggerCall`s, `Timer`s and `Deadline`s.
    A call on a webhook that did not win is kept for a later wait: nothing is lost."""
    wit = [waits.Waitable_Webhook(w.id) if isinstance(w, Webhook) else w.waitable for w in waitables]
    return Selected(waits.select(wit))


def wait_trigger(name: str, timeout_ms: Optional[int] = None) -> Optional[Request]:
    """Waits at the module's named trigger; None when `timeout_ms` passed first."""
    chosen = [TriggerCall(name)] + ([Timer(timeout_ms)] if timeout_ms is not None else [])
    return select(*chosen).request


def step(name: str, work: Callable[[int], Any], *, attempts: int = 3, backoff_ms: int = 1_000,
         max_backoff_ms: int = 60_000) -> Any:
    """Runs a named unit of work at most once per attempt, however often the run is
    replayed: each attempt's JSON output or `Failure` is recorded and read back on replay.
    A `Failure` is retried after a durable backoff (doubling from `backoff_ms`) until
    `attempts` ran; a `Fatal` is not retried. `work` gets the attempt number, from 1, and
    must hand what it learns to the rest of the workflow only through its return value."""
    attempt = 1
    while True:
        ended = steps.recorded(name, attempt)
        if ended is None:
            ended = _attempt(work, attempt)
            steps.record_attempt(name, attempt, ended)
        if isinstance(ended.outcome, Ok):
            return json.loads(ended.outcome.value)
        if ended.fatal or attempt >= attempts:
            raise Failure(ended.outcome.value.code, ended.outcome.value.message)
        waits.sleep(min(backoff_ms * 2 ** (attempt - 1), max_backoff_ms))
        attempt += 1


def _synchronous(value: Any, what: str) -> Any:
    """Workflows are synchronous: every wait blocks in the engine, so a coroutine would
    never run. An `async` function's result is refused by name."""
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never started: no "was never awaited" warning on top
        raise TypeError(f"{what} returned a coroutine: workflows and steps must not be async")
    return value


def _attempt(work: Callable[[int], Any], attempt: int) -> steps.AttemptResult:
    try:
        # Keys sorted as the engine stores them: the live run reads back the same text a
        # replay will, so iterating over the output goes in the same order both times.
        output = _synchronous(work(attempt), f"a step's work (attempt {attempt})")
        output = json.dumps(output, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return steps.AttemptResult(Ok(output), False)
    except Failure as failure:
        return steps.AttemptResult(Err(types.Error(failure.code, failure.message)), isinstance(failure, Fatal))


class HttpResponse:
    """The answer to `http_request`."""

    def __init__(self, wit: outbound.HttpResponse):
        self.status, self.headers, self.body = wit.status, list(wit.headers), wit.body

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise Failure("bad-response", str(e)) from None


def http_request(method: str, url: str, *, json_body: Any = None, body: str = "",
                 headers: Optional[List[tuple]] = None, timeout_ms: Optional[int] = None) -> HttpResponse:
    """Sends an HTTP request through the engine, which records it: a replay gets the
    answer back without calling again. The host must be allowed (`--allow-http`).
    Raises Failure with `host-not-allowed`, `bad-url`, `timeout`, `unreachable`, `too-large`."""
    pairs = list(headers or [])
    if json_body is not None:
        body = json.dumps(json_body)
        pairs.append(("content-type", "application/json"))
    request = outbound.HttpRequest(_methods([method])[0], url, pairs, body, timeout_ms)
    return HttpResponse(_unwrap(lambda: outbound.send(request)))


class Trigger:
    """A start trigger: a call to `/t/{module}/{suffix}` starts a run with that request.
    `expects` is a JSON Schema over `{"method", "headers", "query", "body"}`; `manual_ms`
    lets the run answer (`self.request.respond`); otherwise the caller gets `answer`, a
    `(status, body)` pair whose `{{run_id}}` is filled in, by default 202. `url_key`
    requires an API key in the URL's `?key=`."""

    def __init__(self, name: str, suffix: str, *, methods: Sequence[str] = ("POST",), expects: Any = None,
                 manual_ms: Optional[int] = None, answer: Optional[tuple] = None, url_key: bool = False):
        self.name, self.suffix, self.methods, self.expects = name, suffix, methods, expects
        self.manual_ms, self.answer, self.url_key = manual_ms, answer, url_key

    def wit(self) -> WitTrigger:
        auth = _auth(self.url_key, None)
        answer = _json_response(self.answer[0], self.answer[1], None) if self.answer else None
        expects = None if self.expects is None else json.dumps(self.expects)
        mode = _answer_mode(self.manual_ms, answer)
        return WitTrigger(self.name, self.suffix, _methods(self.methods), auth, types.AuthFailure.ERROR, expects, mode)


def log(message: str, level: str = "info") -> None:
    context.log(context.Level[level.upper()], message)


def run_id() -> str:
    return context.run_id()


def now_ms() -> int:
    return context.now_ms()


def random() -> int:
    """64 random bits, recorded: the same on replay. Use this, not the `random` module."""
    return context.random()


def patched(change_id: str) -> bool:
    """Whether this run takes the path of the change named `change_id` here: True when it
    gets here live (recorded) or replays a log that recorded it, False when it replays a
    log recorded before the change. Wrap calls a new version adds in `if patched("..."):`
    so that old runs' logs still replay on it (and they can be upgraded to it)."""
    return context.patched(change_id)


def sleep(ms: int) -> None:
    """Sleeps durably: the run holds no instance meanwhile, and a restart loses nothing."""
    waits.sleep(ms)


def sleep_until(unix_ms: int) -> None:
    """Sleeps durably until this moment, in milliseconds since the Unix epoch."""
    waits.sleep_until(unix_ms)


class NamedTrigger:
    """How calls to a named mid-flow trigger (`/t/{module}/{name}?execution=...`, waited
    on with `wait_trigger`) are checked: `bearer` lists the roles an API key must hold,
    `url_key` takes an API key in `?key=`, and `condition` is a CEL expression over
    method, headers, query and body (when false the caller gets `{"activated":false}`).
    A run may wait only at a named trigger its module declares; one declared with no
    auth is open to any caller."""

    def __init__(self, name: str, *, bearer: Optional[Sequence[str]] = None, url_key: bool = False,
                 condition: Optional[str] = None):
        self.name, self.auth, self.condition = name, _auth(url_key, bearer), condition

    def wit(self) -> WitNamedTrigger:
        return WitNamedTrigger(self.name, self.auth, types.AuthFailure.ERROR, self.condition)


class Workflow:
    """Base of a module's `WitWorld`: implement `main(self, input)`; list start triggers
    in `triggers` and the checks of named mid-flow triggers in `named_triggers`."""

    description = ""
    triggers: List[Trigger] = []
    named_triggers: List[NamedTrigger] = []

    def describe(self) -> ModuleInfo:
        triggers = [trigger.wit() for trigger in self.triggers]
        return ModuleInfo(self.description, triggers, [trigger.wit() for trigger in self.named_triggers])

    def main(self, input: Any) -> Any:
        raise NotImplementedError

    def run(self, start: Start) -> str:
        self.request = None if isinstance(start, Start_Api) else Request(start.value)
        input = _data(start.value) if self.request is None else self.request.data
        try:
            return json.dumps(_synchronous(self.main(input), "main"))
        except Failure as failure:
            raise Err(types.Error(failure.code, failure.message))
