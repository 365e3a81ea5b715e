//! README "Backend side: the text port": byte-exact forwarding, ok/fail, pipelining, bad input.

use crate::harness::{Pushd, STEP, WsClient};

#[tokio::test]
async fn the_line_is_pushed_byte_for_byte_without_its_line_ending() {
    let pushd = Pushd::start(&[]).await;
    let mut client = pushd.bound_client("42").await;
    let mut backend = pushd.text_client().await;
    let lines = [
        r#"{"uid":42,"msg":"hi"}"#,
        r#"{ "zeta": [1, 2.50, {"nested": null}],   "uid" : "42" , "text":"caf\u00e9 ☕" }"#,
        r#"{"msg":"key order kept","uid":"42","extra":true}"#,
    ];
    for line in lines {
        assert_eq!(backend.request(line).await, "ok");
        assert_eq!(client.recv_text().await, line);
    }
    // \r\n is accepted and stripped too.
    backend.write(b"{\"uid\":\"42\",\"crlf\":1}\r\n").await;
    assert_eq!(backend.reply().await, "ok");
    assert_eq!(client.recv_text().await, r#"{"uid":"42","crlf":1}"#);
}

#[tokio::test]
async fn integer_and_string_uids_are_the_same_uid() {
    let pushd = Pushd::start(&[]).await;
    let mut by_string = pushd.bound_client("42").await;
    let mut backend = pushd.text_client().await;
    assert_eq!(backend.request(r#"{"uid":42}"#).await, "ok");
    assert_eq!(backend.request(r#"{"uid":" 42 "}"#).await, "ok");
    assert_eq!(by_string.recv_text().await, r#"{"uid":42}"#);
    assert_eq!(by_string.recv_text().await, r#"{"uid":" 42 "}"#);
}

#[tokio::test]
async fn fail_for_offline_uid_bad_json_missing_uid_bad_type_and_long_lines() {
    // `--mailbox-ttl 0` is the original recipe: an offline uid's push fails.
    let pushd = Pushd::start(&["--max-message-size", "1024", "--mailbox-ttl", "0"]).await;
    let mut client = pushd.bound_client("42").await;
    let mut backend = pushd.text_client().await;
    let long = format!("{{\"uid\":42,\"pad\":\"{}\"}}", "x".repeat(2000));
    for bad in [
        r#"{"uid":"nobody"}"#,
        "not json",
        r#"{"msg":"no uid"}"#,
        r#"{"uid":null}"#,
        r#"{"uid":4.2}"#,
        r#"{"uid":["42"]}"#,
        r#"{"uid":""}"#,
        "",
        long.as_str(),
    ] {
        assert_eq!(backend.request(bad).await, "fail", "{bad:?}");
    }
    // The same connection still works, and the client got none of the above.
    assert_eq!(backend.request(r#"{"uid":42,"n":1}"#).await, "ok");
    assert_eq!(client.recv_text().await, r#"{"uid":42,"n":1}"#);
    let counters = &pushd.stats().await["counters"];
    assert_eq!(
        (counters["text_ok"].as_u64(), counters["text_fail"].as_u64()),
        (Some(1), Some(9))
    );
}

#[tokio::test]
async fn non_utf8_and_binary_garbage_fail_that_line_only() {
    let pushd = Pushd::start(&[]).await;
    let mut client = pushd.bound_client("42").await;
    let mut bystander = pushd.text_client().await;
    let mut backend = pushd.text_client().await;
    backend
        .write(b"{\"uid\":\"4\xff2\"}\n\x00\x01\x02\xfe\n")
        .await;
    assert_eq!(backend.reply().await, "fail");
    assert_eq!(backend.reply().await, "fail");
    assert_eq!(backend.request(r#"{"uid":42}"#).await, "ok");
    assert_eq!(bystander.request(r#"{"uid":42,"b":1}"#).await, "ok");
    assert_eq!(client.recv_text().await, r#"{"uid":42}"#);
    assert_eq!(client.recv_text().await, r#"{"uid":42,"b":1}"#);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_delivered_in_order() {
    let pushd = Pushd::start(&[]).await;
    let mut client = pushd.bound_client("42").await;
    let mut backend = pushd.text_client().await;
    // 1,000 requests in one write: every third one addresses an offline uid.
    let mut batch = String::new();
    let mut expected = Vec::new();
    for i in 0..1000 {
        let uid = if i % 3 == 2 { "offline" } else { "42" };
        batch.push_str(&format!("{{\"uid\":\"{uid}\",\"seq\":{i}}}\n"));
        expected.push(if uid == "42" { "ok" } else { "queued" });
    }
    backend.write(batch.as_bytes()).await;
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(backend.reply().await, *want, "reply {i}");
    }
    for i in (0..1000).filter(|i| i % 3 != 2) {
        assert_eq!(
            client.recv_text().await,
            format!("{{\"uid\":\"42\",\"seq\":{i}}}")
        );
    }
}

#[tokio::test]
async fn many_text_connections_at_once() {
    let pushd = Pushd::start(&[]).await;
    let mut client = pushd.bound_client("42").await;
    let mut backends = Vec::new();
    for _ in 0..50 {
        backends.push(pushd.text_client().await);
    }
    // Connected at the kernel's level; pushd accepts them a moment later.
    crate::harness::eventually(STEP, "50 text connections", || async {
        pushd.stats().await["text_connections"] == 50
    })
    .await;
    let replies = futures_util::future::join_all(
        backends
            .iter_mut()
            .enumerate()
            .map(|(i, b)| async move { b.request(&format!("{{\"uid\":42,\"from\":{i}}}")).await }),
    )
    .await;
    assert!(replies.iter().all(|r| r == "ok"), "{replies:?}");
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..50 {
        seen.push(client.recv_text().await);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 50);
}

#[tokio::test]
async fn bad_input_never_closes_other_connections_or_stops_the_daemon() {
    let pushd = Pushd::start(&["--max-message-size", "1024"]).await;
    let mut client = pushd.bound_client("42").await;
    // A backend that sends garbage and hangs up mid-line.
    let mut rude = pushd.text_client().await;
    rude.write(&[0xff; 5000]).await;
    rude.write(b"{\"uid\":42").await;
    drop(rude);
    // A WebSocket peer that sends garbage instead of a handshake.
    let mut raw = tokio::net::TcpStream::connect(pushd.ws).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut raw, b"GET / HTTP/1.1\r\n\r\n\x00\xff")
        .await
        .unwrap();
    drop(raw);
    // Everything else still works.
    let mut backend = pushd.text_client().await;
    assert_eq!(backend.request(r#"{"uid":42}"#).await, "ok");
    assert_eq!(client.recv_text().await, r#"{"uid":42}"#);
    let mut late = WsClient::connect(pushd.ws).await;
    late.send_text("43").await;
    pushd.wait_connections("43", 1).await;
    pushd.fence("42", &mut [&mut client]).await;
}

/// Regression: `["x"]` answered `ok` and reached uid `x` (a JSON array was read
/// as the request struct's fields); `{"uid":-0}` failed; an integer longer than
/// 64 bits failed instead of naming the uid of its digits.
#[tokio::test]
async fn only_a_json_object_is_a_request_and_integers_are_taken_by_value() {
    let pushd = Pushd::start(&[]).await;
    let mut x = pushd.bound_client("x").await;
    let mut thousand = pushd.bound_client("1000").await;
    let mut zero = pushd.bound_client("0").await;
    let big = "-12345678901234567890123";
    let mut huge = pushd.bound_client(big).await;
    let mut backend = pushd.text_client().await;
    for line in [
        r#"["x"]"#,
        r#"[{"uid":"x"}]"#,
        r#""x""#,
        "1000",
        "true",
        "false",
        "null",
        r#"{"uid":1e3}"#,
        r#"{"uid":1000.0}"#,
    ] {
        assert_eq!(backend.request(line).await, "fail", "{line}");
    }
    assert_eq!(backend.request(r#"{"uid":-0}"#).await, "ok");
    assert_eq!(zero.recv_text().await, r#"{"uid":-0}"#);
    let line = format!(r#"{{"uid":{big},"m":1}}"#);
    assert_eq!(backend.request(&line).await, "ok");
    assert_eq!(huge.recv_text().await, line);
    // None of the failed lines reached anybody.
    pushd.fence("x", &mut [&mut x]).await;
    pushd.fence("1000", &mut [&mut thousand]).await;
}
