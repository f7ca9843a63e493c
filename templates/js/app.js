// The `{{name}}` plugin. `GET /` greets and counts visits in kv; `GET /db`
// runs a query on the `main` database. gatehouse rebuilds it on every save.
//
// Imports name WIT interfaces (the WIT is in wit/); ComponentizeJS turns this
// module into a component of the gatehouse:plugin/plugin world.
import {
  Fields,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from "wasi:http/types@0.2.12";
import { increment } from "gatehouse:plugin/kv@0.1.0";
import { Connection } from "gatehouse:plugin/sql@0.1.0";

const encoder = new TextEncoder();

function respond(responseOut, status, text) {
  const headers = Fields.fromList([["content-type", encoder.encode("text/plain; charset=utf-8")]]);
  const response = new OutgoingResponse(headers);
  response.setStatusCode(status);
  const body = response.body();
  ResponseOutparam.set(responseOut, { tag: "ok", val: response });
  const stream = body.write();
  const bytes = encoder.encode(text);
  for (let start = 0; start < bytes.length; start += 4096) {
    stream.blockingWriteAndFlush(bytes.subarray(start, start + 4096));
  }
  stream[Symbol.dispose]();
  OutgoingBody.finish(body, undefined);
}

export const incomingHandler = {
  handle(request, responseOut) {
    const path = (request.pathWithQuery() ?? "/").split("?")[0];
    try {
      if (path === "/") {
        const visits = increment("visits", 1n);
        respond(responseOut, 200, `Hello from {{name}}! Visit number ${visits}.\n`);
      } else if (path === "/db") {
        const db = Connection.open("main");
        const rows = db.query("SELECT $1 || ' from sql'", [{ tag: "text", val: "hello" }]);
        respond(responseOut, 200, `${rows.rows[0][0].val}\n`);
      } else {
        respond(responseOut, 404, "not found\n");
      }
    } catch (e) {
      respond(responseOut, 503, `failed: ${JSON.stringify(e.payload ?? String(e))}\n`);
    }
  },
};
