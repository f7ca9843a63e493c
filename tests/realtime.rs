//! WebSockets and event streams handled by plugins, and the realtime
//! channels, through the `fixtures/realtime` component on real sockets.

use crate::harness::{Server, Site, client, component, config_with};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const GRANTED: &str = "[grants]\nrealtime = true\n";

/// Serves the fixture as `rt` (and as `other` too, with `other`), under
/// the extra host config `extra`.
async fn start(extra: &str, other: bool) -> (Site, Server) {
    let site = Site::new();
    site.put("rt.toml", GRANTED);
    site.put("rt.wasm", component("fixtures/realtime"));
    if other {
        site.put("other.toml", GRANTED);
        site.put("other.wasm", component("fixtures/realtime"));
    }
    let server = site.serve_config(&config_with(extra), &[]);
    server.wait_serving("rt").await;
    if other {
        server.wait_serving("other").await;
    }
    (site, server)
}

async fn connect(server: &Server, path: &str) -> Socket {
    let url = format!("ws://{}{path}", server.addr);
    let (socket, response) = tokio_tungstenite::connect_async(&url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    assert_eq!(response.status(), 101);
    socket
}

/// The next text message, skipping pings; panics after five seconds.
async fn next_text(socket: &mut Socket) -> String {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a message within 5 s")
            .expect("the socket is open")
            .expect("a frame");
        match frame {
            Message::Text(text) => return text.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// Connects and reads the welcome; returns the socket and its connection id.
async fn joined(server: &Server, path: &str) -> (Socket, u64) {
    let mut socket = connect(server, path).await;
    let welcome = next_text(&mut socket).await;
    let id = welcome
        .strip_prefix("welcome ")
        .unwrap_or_else(|| panic!("expected a welcome, got {welcome}"))
        .parse()
        .unwrap();
    (socket, id)
}

/// The status and body of a WebSocket handshake the server refuses.
async fn refused(server: &Server, path: &str) -> (u16, String) {
    let url = format!("ws://{}{path}", server.addr);
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            (
                response.status().as_u16(),
                String::from_utf8_lossy(body).into_owned(),
            )
        }
        other => panic!("expected {url} to be refused, got {other:?}"),
    }
}

/// Opens an event stream (Server-Sent Events) on `path`.
async fn event_stream(server: &Server, path: &str) -> reqwest::Response {
    client()
        .get(server.url(path))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap()
}

/// The close frame the server ends with.
async fn close_frame(socket: &mut Socket) -> (CloseCode, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("the server closes within 5 s")
        {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (frame.code, frame.reason.as_str().to_owned());
            }
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                panic!("the connection ended without a close frame")
            }
            Some(Ok(_)) => continue,
        }
    }
}

async fn post(server: &Server, path: &str, body: &str) -> (u16, String) {
    let response = client()
        .post(server.url(path))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_lives_through_open_messages_and_close() {
    let (_site, server) = start("", false).await;
    let (mut watcher, _) = joined(&server, "/rt/ws?channel=closed").await;
    let (mut socket, id) = joined(&server, "/rt/ws").await;

    socket.send(Message::text("echo:hello")).await.unwrap();
    assert_eq!(next_text(&mut socket).await, "hello");
    socket.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let echoed = socket.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_data().as_ref(), &[1u8, 2, 3]);

    // The plugin closes it with its own code; on-close tells the watcher.
    socket.send(Message::text("close")).await.unwrap();
    let (code, reason) = close_frame(&mut socket).await;
    assert_eq!((u16::from(code), reason.as_str()), (4000, "bye"));
    assert_eq!(next_text(&mut watcher).await, format!("closed {id} 4000"));

    // A client that closes gets on-close with its code.
    let (mut socket, id) = joined(&server, "/rt/ws").await;
    socket.close(None).await.unwrap();
    assert_eq!(next_text(&mut watcher).await, format!("closed {id} 1005"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_is_on_at_most_channels_per_connection_channels() {
    let (_site, server) = start("[realtime]\nchannels_per_connection = 2\n", false).await;
    // The fixture refuses the connection with the error of the subscribe
    // that failed.
    let (status, body) = refused(&server, "/rt/ws?channel=a&channel=b&channel=c").await;
    assert_eq!(status, 500);
    assert!(
        body.contains("TooLarge") && body.contains("channels_per_connection"),
        "{body}"
    );
    let (mut socket, _) = joined(&server, "/rt/ws?channel=a&channel=b&channel=a").await;
    socket.send(Message::text("publish:b:on b")).await.unwrap();
    assert_eq!(next_text(&mut socket).await, "on b");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_open_may_refuse_a_connection() {
    let (_site, server) = start("", false).await;
    let (status, body) = refused(&server, "/rt/ws?reject=1").await;
    assert_eq!(status, 403);
    assert!(body.contains("refused by the plugin"), "{body}");
    // The host keeps serving connections that are accepted.
    let (mut socket, _) = joined(&server, "/rt/ws").await;
    socket.send(Message::text("echo:still here")).await.unwrap();
    assert_eq!(next_text(&mut socket).await, "still here");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publish_from_http_fans_out_to_every_subscriber() {
    let (_site, server) = start("", false).await;
    let mut sockets = Vec::new();
    for _ in 0..50 {
        sockets.push(joined(&server, "/rt/ws?channel=news").await.0);
    }
    let (mut elsewhere, _) = joined(&server, "/rt/ws?channel=sports").await;

    assert_eq!(
        post(&server, "/rt/publish/news", "extra!").await,
        (200, "50".into())
    );
    for socket in &mut sockets {
        assert_eq!(next_text(socket).await, "extra!");
    }
    // One connection by id, from an HTTP handler.
    let (mut one, id) = joined(&server, "/rt/ws").await;
    assert_eq!(
        post(&server, &format!("/rt/send/{id}"), "just you").await.0,
        200
    );
    assert_eq!(next_text(&mut one).await, "just you");

    // A socket publishes to the channel of others.
    elsewhere
        .send(Message::text("publish:news:from a socket"))
        .await
        .unwrap();
    for socket in &mut sockets {
        assert_eq!(next_text(socket).await, "from a socket");
    }

    // Closed connections leave their channels.
    for mut socket in sockets.drain(..) {
        socket.close(None).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, reached) = post(&server, "/rt/publish/news", "anyone?").await;
        if reached == "0" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {reached} subscribers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn channels_and_connections_belong_to_their_plugin() {
    let (_site, server) = start("", true).await;
    let (mut mine, id) = joined(&server, "/rt/ws?channel=news").await;
    // The other plugin's channel of the same name is another channel.
    assert_eq!(
        post(&server, "/other/publish/news", "spoof").await,
        (200, "0".into())
    );
    // And it cannot reach this plugin's connection by id.
    let (status, body) = post(&server, &format!("/other/send/{id}"), "spoof").await;
    assert_eq!(status, 409);
    assert!(body.contains("NoSuchConnection"), "{body}");
    assert_eq!(
        post(&server, "/rt/publish/news", "real").await,
        (200, "1".into())
    );
    assert_eq!(next_text(&mut mine).await, "real");
}

#[tokio::test(flavor = "multi_thread")]
async fn realtime_needs_a_grant() {
    let site = Site::new();
    site.put("rt.wasm", component("fixtures/realtime"));
    let server = site.serve_config(&config_with(""), &[]);
    server.wait_serving("rt").await;
    let (status, body) = post(&server, "/rt/publish/news", "x").await;
    assert_eq!(status, 409);
    assert!(
        body.contains("NotGranted") && body.contains("realtime = true"),
        "{body}"
    );
    // on-open's subscribe fails, and the plugin refuses the connection.
    let url = format!("ws://{}/rt/ws?channel=news", server.addr);
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 500)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn message_size_and_rate_are_limited() {
    let (_site, server) = start(
        "[realtime]\nmax_message_bytes = 1024\nmessages_per_second = 2\nburst = 3\n",
        false,
    )
    .await;
    let (mut watcher, _) = joined(&server, "/rt/ws?channel=closed").await;

    let (mut socket, id) = joined(&server, "/rt/ws").await;
    socket
        .send(Message::text(format!("echo:{}", "x".repeat(2000))))
        .await
        .unwrap();
    let (code, reason) = close_frame(&mut socket).await;
    assert_eq!(code, CloseCode::Size);
    assert!(reason.contains("1024"), "{reason}");
    assert_eq!(next_text(&mut watcher).await, format!("closed {id} 1009"));

    let (mut socket, id) = joined(&server, "/rt/ws").await;
    for i in 0..10 {
        if socket
            .send(Message::text(format!("echo:{i}")))
            .await
            .is_err()
        {
            break;
        }
    }
    let (code, reason) = close_frame(&mut socket).await;
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("messages per second"), "{reason}");
    assert_eq!(next_text(&mut watcher).await, format!("closed {id} 1008"));

    // A plugin cannot send more than the limit either.
    let (mut socket, id) = joined(&server, "/rt/ws").await;
    let (status, body) = post(&server, &format!("/rt/send/{id}"), &"y".repeat(2000)).await;
    assert_eq!(status, 409);
    assert!(body.contains("TooLarge"), "{body}");
    socket.send(Message::text("echo:fine")).await.unwrap();
    assert_eq!(next_text(&mut socket).await, "fine");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_fails_leaves_the_realtime_limits_as_they_were() {
    let (site, server) = start("[realtime]\nmax_message_bytes = 1024\n", false).await;
    // The new limit is valid; the reload fails later, binding a port that
    // is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = config_with(&format!(
        "[realtime]\nmax_message_bytes = 100\n[[listener]]\naddr = \"{}\"\n",
        taken.local_addr().unwrap()
    ));
    let tmp = site.dir.path().join(".gatehouse.toml.tmp");
    std::fs::write(&tmp, config).unwrap();
    std::fs::rename(&tmp, site.dir.path().join("gatehouse.toml")).unwrap();
    server.wait_log("config reload failed", Duration::from_secs(10));

    let (mut socket, _) = joined(&server, "/rt/ws").await;
    let message = "x".repeat(500);
    socket
        .send(Message::text(format!("echo:{message}")))
        .await
        .unwrap();
    assert_eq!(next_text(&mut socket).await, message);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_pinged() {
    let (_site, server) = start("[realtime]\nping_interval_ms = 200\n", false).await;
    let mut socket = connect(&server, "/rt/ws").await;
    let mut pings = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while pings < 3 {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("pings within 5 s")
            .unwrap()
            .unwrap();
        if let Message::Ping(_) = frame {
            pings += 1;
        }
    }
    // tungstenite answered each ping, so the connection is still open.
    socket.send(Message::text("echo:alive")).await.unwrap();
    assert_eq!(next_text(&mut socket).await, "alive");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_stream_gets_the_same_channels() {
    // Pings every 200 ms: a write is how the host notices the client left.
    let (_site, server) = start("[realtime]\nping_interval_ms = 200\n", false).await;
    let response = event_stream(&server, "/rt/ws?channel=news").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    let mut read_until = async |needle: &str| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !seen.contains(needle) {
            let chunk = tokio::time::timeout_at(deadline, body.next())
                .await
                .unwrap_or_else(|_| panic!("no {needle:?} in {seen:?}"))
                .unwrap()
                .unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        seen.clone()
    };
    let welcome = read_until("\n\n").await;
    assert!(welcome.starts_with("data: welcome "), "{welcome}");
    assert_eq!(
        post(&server, "/rt/publish/news", "line one\nline two")
            .await
            .1,
        "1"
    );
    let text = read_until("data: line one\ndata: line two\n\n").await;
    assert!(text.contains("data: line one\ndata: line two\n\n"));
    drop(body);
    // The stream's connection is gone once the client is.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while post(&server, "/rt/publish/news", "x").await.1 != "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream was not cleaned up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn at_shutdown_realtime_clients_are_told_the_server_is_going_away() {
    let (_site, server) = start("[server]\nshutdown_grace_ms = 5000\n", false).await;
    let (mut socket, _) = joined(&server, "/rt/ws").await;
    let mut stream = event_stream(&server, "/rt/ws").await.bytes_stream();
    let welcome = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&welcome.unwrap().unwrap()).starts_with("data: welcome"),
        "no welcome on the event stream"
    );
    server.terminate();
    // The WebSocket gets 1001, the event stream ends cleanly, both at once
    // rather than at the end of the grace period.
    let started = std::time::Instant::now();
    let (code, reason) = close_frame(&mut socket).await;
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::Away, "server shutting down")
    );
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                other => return other.map(|r| r.map(|_| ())),
            }
        }
    })
    .await
    .expect("the event stream ends");
    assert!(
        end.is_none(),
        "the event stream ended with an error: {end:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_opens_over_http2_extended_connect() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio_tungstenite::tungstenite::protocol::Role;
    // An open WebSocket is a running request: the HTTP/2 connection that
    // carries it outlives the idle timeout.
    let (_site, server) = start("[limits]\nidle_timeout_ms = 1000", false).await;
    let (mut watcher, _) = joined(&server, "/rt/ws?channel=h2").await;

    let tcp = TcpStream::connect(&server.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{}/rt/ws?channel=h2", server.addr))
        .header("sec-websocket-version", "13")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    request
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let upgraded = hyper::upgrade::on(response).await.unwrap();
    let mut socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;

    let welcome = loop {
        match socket.next().await.unwrap().unwrap() {
            Message::Text(text) => break text.as_str().to_owned(),
            _ => continue,
        }
    };
    assert!(welcome.starts_with("welcome "), "{welcome}");
    socket.send(Message::text("echo:over h2")).await.unwrap();
    let echoed = loop {
        match socket.next().await.unwrap().unwrap() {
            Message::Text(text) => break text.as_str().to_owned(),
            _ => continue,
        }
    };
    assert_eq!(echoed, "over h2");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Both transports share the channels.
    assert_eq!(post(&server, "/rt/publish/h2", "both").await.1, "2");
    assert_eq!(next_text(&mut watcher).await, "both");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hot_swap_reaches_open_connections_at_their_next_message() {
    // Two versions told apart by their grants: the sidecar changes, and the
    // plugin is swapped.
    let site = Site::new();
    let sidecar = |var: &str| format!("[grants]\nrealtime = true\nenv = [\"{var}\"]\n");
    site.put("rt.toml", sidecar("GATEHOUSE_TEST_ONE"));
    site.put("rt.wasm", component("fixtures/realtime"));
    let env = [("GATEHOUSE_TEST_ONE", "one"), ("GATEHOUSE_TEST_TWO", "two")];
    let server = site.serve_config(&config_with(""), &env);
    server.wait_serving("rt").await;
    let (mut socket, _) = joined(&server, "/rt/ws?channel=news").await;
    socket.send(Message::text("env")).await.unwrap();
    assert_eq!(next_text(&mut socket).await, "GATEHOUSE_TEST_ONE=one");

    site.put("rt.toml", sidecar("GATEHOUSE_TEST_TWO"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        socket.send(Message::text("env")).await.unwrap();
        match next_text(&mut socket).await.as_str() {
            "GATEHOUSE_TEST_TWO=two" => break,
            "GATEHOUSE_TEST_ONE=one" => {}
            other => panic!("neither version answered: {other}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the open socket never reached the new version; logs:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The socket kept its subscription across the swap.
    assert_eq!(
        post(&server, "/rt/publish/news", "after the swap").await,
        (200, "1".into())
    );
    assert_eq!(next_text(&mut socket).await, "after the swap");
}

#[tokio::test(flavor = "multi_thread")]
async fn open_websockets_count_against_the_connection_caps() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_site, server) = start("[firewall]\nmax_connections_per_ip = 2", false).await;
    let (mut first, _) = joined(&server, "/rt/ws").await;
    let (_second, _) = joined(&server, "/rt/ws").await;
    // Both upgraded sockets still hold their slots: a third connection from
    // the same address is closed unanswered.
    let mut third = TcpStream::connect(&server.addr).await.unwrap();
    let _ = third
        .write_all(b"GET /rt/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("the third connection is closed within 5 s");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "a third connection got an answer: {:?}",
        String::from_utf8_lossy(&buf)
    );
    // Closing one socket frees its slot.
    first.close(None).await.unwrap();
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let url = format!("ws://{}/rt/ws", server.addr);
        if tokio_tungstenite::connect_async(&url).await.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
