"""Write Latch workflows in Python.

A workflow module defines `class WitWorld(latch.Workflow)` with a `main(self, input)`
method: `input` is the run's JSON input (or the trigger request's data) as Python
values, and what `main` returns is the run's output. Raise `latch.Failure` to fail the
run with a code. Build the module into a component with componentize-py:

    componentize-py -d wit -w workflow componentize -p sdk/python -p <your dir> app -o app.wasm
"""

import json
from typing import Any, List, Optional

from componentize_py_types import Err
from wit_world import ModuleInfo, Start, Start_Api
from wit_world.imports import context, responses, types, waits, webhooks


class Failure(Exception):
    """Fails the run (or reports a refused engine call) with a stable code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


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

    def header(self, name: str) -> Optional[str]:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def respond(self, status: int, body: Any = None, headers: Optional[List[tuple]] = None) -> None:
        """Answers the caller of a webhook in manual response mode (JSON body)."""
        text = "" if body is None else json.dumps(body)
        pairs = list(headers or []) + ([("content-type", "application/json")] if text else [])
        _unwrap(lambda: responses.respond(self.id, types.Response(status, pairs, text)))


class Webhook:
    """A URL owned by the run that external systems call."""

    def __init__(self, *, token: Optional[str] = None, many: bool = False, manual_ms: Optional[int] = None,
                 url_key: bool = False, expires_in_ms: Optional[int] = None):
        if manual_ms is None:
            answer = types.Response(202, [("content-type", "application/json")], '{"accepted":true}')
            mode = types.ResponseMode_Automatic(answer)
        else:
            mode = types.ResponseMode_Manual(manual_ms)
        auth = types.Auth_UrlKey() if url_key else types.Auth_None_()
        options = webhooks.WebhookOptions(
            token, [types.Method.POST], not many, auth, types.AuthFailure.ERROR, mode, expires_in_ms, None, None
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


def log(message: str, level: str = "info") -> None:
    context.log(context.Level[level.upper()], message)


def run_id() -> str:
    return context.run_id()


def now_ms() -> int:
    return context.now_ms()


def sleep(ms: int) -> None:
    waits.sleep(ms)


class Workflow:
    """Base of a module's `WitWorld`: implement `main(self, input)`."""

    description = ""

    def describe(self) -> ModuleInfo:
        return ModuleInfo(self.description, [], [])

    def main(self, input: Any) -> Any:
        raise NotImplementedError

    def run(self, start: Start) -> str:
        if isinstance(start, Start_Api):
            input = _data(start.value)
        else:
            input = Request(start.value).data
        try:
            return json.dumps(self.main(input))
        except Failure as failure:
            raise Err(types.Error(failure.code, failure.message))
