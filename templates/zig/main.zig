//! The `{{name}}` plugin, a CGI program: gatehouse runs it once per request
//! with the request in its environment (REQUEST_METHOD, PATH_INFO,
//! QUERY_STRING, HTTP_* headers) and the body on stdin, and answers with
//! what it writes to stdout: header lines, a blank line, the body.
//! gatehouse rebuilds it on every save.
const std = @import("std");

pub fn main(init: std.process.Init) !void {
    const env = init.environ_map;
    const path = env.get("PATH_INFO") orelse "/";
    const agent = env.get("HTTP_USER_AGENT") orelse "someone";

    var buffer: [4096]u8 = undefined;
    var stdout = std.Io.File.stdout().writerStreaming(init.io, &buffer);
    const out = &stdout.interface;
    if (std.mem.eql(u8, path, "/")) {
        try out.print("Content-Type: text/plain; charset=utf-8\n\n", .{});
        try out.print("Hello from {{name}}! A Zig CGI program greets {s}.\n", .{agent});
    } else {
        try out.print("Status: 404 Not Found\nContent-Type: text/plain\n\nnot found\n", .{});
    }
    try out.flush();
}
