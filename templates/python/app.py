"""The `{{name}}` plugin. `GET /` greets and counts visits in kv; `GET /db`
runs a query on the `main` database. gatehouse rebuilds it on every save.

The bindings (`wit_world`) are generated from the WIT in `wit/` by
componentize-py; `componentize-py -d wit -w gatehouse:plugin/plugin bindings
out` writes them out for your editor.
"""

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import kv, sql
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = (request.path_with_query() or "/").split("?")[0]
        try:
            if path == "/":
                visits = kv.increment("visits", 1)
                respond(response_out, 200, f"Hello from {{name}}! Visit number {visits}.\n")
            elif path == "/db":
                db = sql.Connection.open("main")
                rows = db.query("SELECT $1 || ' from sql'", [sql.Value_Text("hello")])
                respond(response_out, 200, f"{rows.rows[0][0].value}\n")
            else:
                respond(response_out, 404, "not found\n")
        except Err as e:
            respond(response_out, 503, f"failed: {e.value}\n")


def respond(response_out: ResponseOutparam, status: int, text: str) -> None:
    """Sends a plain-text response."""
    headers = Fields.from_list([("content-type", b"text/plain; charset=utf-8")])
    response = OutgoingResponse(headers)
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    data = text.encode()
    with body.write() as stream:
        for start in range(0, len(data), 4096):
            stream.blocking_write_and_flush(data[start : start + 4096])
    OutgoingBody.finish(body, None)
