//! The delivery engine end to end: publish over gRPC, a real receiver on
//! loopback, deliveries and attempts read back over gRPC.

use std::time::Duration;

use hookd::grpc::pb;
use tonic::Code;

use crate::db_test;
use crate::helpers::{
    TestApp, attempts_of, publish_one, receiver_endpoint, seconds_between, to_endpoint,
    wait_for_delivery,
};
use crate::receiver::{Behavior, TestReceiver};

/// An endpoint at `receiver`, signed with `convoy-secret-1`.
async fn endpoint_at(
    app: &TestApp,
    receiver: &TestReceiver,
    f: impl FnOnce(&mut pb::Endpoint),
) -> pb::Endpoint {
    receiver_endpoint(app, receiver, "convoy-secret-1", f).await
}

const WAIT: Duration = Duration::from_secs(10);

db_test!(
    an_event_arrives_signed_and_the_delivery_succeeds,
    |app| async move {
        let receiver = TestReceiver::start().await;
        let endpoint = endpoint_at(&app, &receiver, |_| {}).await;
        let payload = r#"{"order":  42, "note": "byte for byte"}"#;
        let published = app
            .events()
            .await
            .create_event(to_endpoint(&endpoint.id, payload))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(published.deliveries.len(), 1);
        let delivery_id = published.deliveries[0].id.clone();

        let request = receiver.next_request(WAIT).await;
        assert_eq!(request.method, "POST");
        assert_eq!(request.body_str(), payload);
        assert_eq!(
            request.header("x-hookd-delivery-id"),
            Some(delivery_id.as_str())
        );

        let delivery =
            wait_for_delivery(&app, &delivery_id, pb::DeliveryStatus::Success, WAIT).await;
        assert_eq!(delivery.attempts, 1);
        assert_eq!(delivery.last_http_status, 200);
        let attempts = app
            .events()
            .await
            .list_delivery_attempts(pb::ListDeliveryAttemptsRequest {
                delivery_id: delivery_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .attempts;
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].http_status, Some(200));
        assert_eq!(attempts[0].ip_address, "127.0.0.1");
        assert!(attempts[0].responded_at.is_some());
        assert_eq!(attempts[0].error, "");
    }
);

db_test!(
    failures_are_retried_on_schedule_until_the_limit,
    |app| async move {
        let receiver = TestReceiver::start().await;
        receiver.respond_with(Behavior::Status(500));
        let endpoint = endpoint_at(&app, &receiver, |_| {}).await;
        let published = app
            .events()
            .await
            .create_event(to_endpoint(&endpoint.id, "{}"))
            .await
            .unwrap()
            .into_inner();
        let id = published.deliveries[0].id.clone();

        // The default policy: 12 attempts, 5 s then x3 each time (+-20 %), at most 6 h.
        let mut expected_delay = 5.0_f64;
        for attempt in 1..=12u32 {
            receiver.next_request(WAIT).await;
            if attempt == 12 {
                break;
            }
            let waiting = wait_for_delivery(&app, &id, pb::DeliveryStatus::Retry, WAIT).await;
            assert_eq!(waiting.attempts, attempt);
            assert_eq!(waiting.description, "HTTP 500");
            let delay = seconds_between(&waiting.updated_at, &waiting.next_attempt_at);
            assert!(
                delay >= expected_delay * 0.8 - 0.01 && delay <= expected_delay * 1.2 + 0.01,
                "attempt {attempt}: delay {delay} s, expected about {expected_delay} s"
            );
            // Nothing is sent before the delay is over...
            assert_eq!(
                app.engine.tick().await.unwrap(),
                0,
                "attempt {attempt}: not due yet"
            );
            // ...and it is sent once the clock has moved past it.
            app.clock.advance(Duration::from_secs_f64(delay + 0.5));
            app.engine.tick().await.unwrap();
            expected_delay = (expected_delay * 3.0).min(6.0 * 3600.0);
        }
        let failed = wait_for_delivery(&app, &id, pb::DeliveryStatus::Failure, WAIT).await;
        assert_eq!(failed.description, "Retry limit exceeded");
        assert_eq!(failed.attempts, 12);
        assert_eq!(failed.next_attempt_at, None);
        let attempts = app
            .events()
            .await
            .list_delivery_attempts(pb::ListDeliveryAttemptsRequest {
                delivery_id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .attempts;
        assert_eq!(attempts.len(), 12);
        // The same attempts a page at a time.
        let mut paged = Vec::new();
        let mut token = String::new();
        loop {
            let page = app
                .events()
                .await
                .list_delivery_attempts(pb::ListDeliveryAttemptsRequest {
                    delivery_id: id.clone(),
                    page_size: 5,
                    page_token: token.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            paged.extend(page.attempts.into_iter().map(|a| a.number));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(paged, (1..=12).collect::<Vec<u32>>());
        assert!(
            attempts
                .iter()
                .enumerate()
                .all(|(i, a)| a.number == i as u32 + 1 && a.http_status == Some(500))
        );
        app.clock.advance(Duration::from_secs(24 * 3600));
        app.engine.tick().await.unwrap();
        receiver.expect_no_request(Duration::from_millis(300)).await;

        // A failed delivery can be retried by hand, and then succeeds.
        receiver.respond_with(Behavior::Status(204));
        let retried = app
            .events()
            .await
            .retry_delivery(pb::RetryDeliveryRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(retried.status, pb::DeliveryStatus::Scheduled as i32);
        receiver.next_request(WAIT).await;
        let done = wait_for_delivery(&app, &id, pb::DeliveryStatus::Success, WAIT).await;
        assert_eq!(done.attempts, 13);
        let again = app
            .events()
            .await
            .retry_delivery(pb::RetryDeliveryRequest { id: id.clone() })
            .await
            .unwrap_err();
        assert_eq!(again.code(), Code::FailedPrecondition);
    }
);

async fn set_status(app: &TestApp, id: &str, status: pb::EndpointStatus) {
    app.endpoints()
        .await
        .update_endpoint(pb::UpdateEndpointRequest {
            endpoint: Some(pb::Endpoint {
                id: id.to_owned(),
                status: status as i32,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["status".into()],
            }),
            ..Default::default()
        })
        .await
        .expect("status set");
}

/// Waits for each of `ids` to succeed, and checks it took one attempt.
async fn succeed_at_first_attempt(app: &TestApp, ids: &[String]) {
    for id in ids {
        let delivery = wait_for_delivery(app, id, pb::DeliveryStatus::Success, WAIT).await;
        assert_eq!(delivery.attempts, 1, "{delivery:?}");
    }
}

/// Publishes `n` events to a new endpoint at `receiver`, each once the one
/// before has succeeded.
async fn deliver_one_at_a_time(app: &TestApp, receiver: &TestReceiver, n: usize) {
    let endpoint = endpoint_at(app, receiver, |_| {}).await;
    for _ in 0..n {
        let id = publish_one(app, &endpoint.id).await;
        succeed_at_first_attempt(app, &[id]).await;
    }
}

/// Moves the clock past any backoff and runs the poller once.
async fn skip_backoff(app: &TestApp) {
    app.clock.advance(Duration::from_secs(7 * 3600));
    app.engine.tick().await.expect("tick");
}

db_test!(
    paused_endpoints_get_nothing_new_or_queued_until_resumed,
    |app| async move {
        let receiver = TestReceiver::start().await;
        let endpoint = endpoint_at(&app, &receiver, |_| {}).await;

        // Paused at publish: discarded at once, never sent.
        set_status(&app, &endpoint.id, pb::EndpointStatus::Paused).await;
        let at_publish = app
            .events()
            .await
            .create_event(to_endpoint(&endpoint.id, "{}"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            at_publish.deliveries[0].status,
            pb::DeliveryStatus::Discarded as i32
        );
        assert_eq!(at_publish.deliveries[0].description, "Endpoint is paused");

        // Paused while waiting to retry: discarded when its turn comes.
        set_status(&app, &endpoint.id, pb::EndpointStatus::Active).await;
        receiver.respond_sequence(vec![Behavior::Status(500)]);
        let waiting = publish_one(&app, &endpoint.id).await;
        receiver.next_request(WAIT).await;
        wait_for_delivery(&app, &waiting, pb::DeliveryStatus::Retry, WAIT).await;
        set_status(&app, &endpoint.id, pb::EndpointStatus::Paused).await;
        skip_backoff(&app).await;
        let discarded =
            wait_for_delivery(&app, &waiting, pb::DeliveryStatus::Discarded, WAIT).await;
        assert_eq!(discarded.description, "Endpoint is paused");
        assert_eq!(discarded.attempts, 1, "no attempt was made after the pause");
        receiver.expect_no_request(Duration::from_millis(300)).await;

        // Resumed: both discarded deliveries can be retried, in one batch.
        set_status(&app, &endpoint.id, pb::EndpointStatus::Active).await;
        let retried = app
            .events()
            .await
            .batch_retry_deliveries(pb::BatchRetryDeliveriesRequest {
                endpoint_id: endpoint.id.clone(),
                statuses: vec![pb::DeliveryStatus::Discarded as i32],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(retried.scheduled, 2);
        receiver.wait_for_count(3, WAIT).await;
        wait_for_delivery(&app, &waiting, pb::DeliveryStatus::Success, WAIT).await;
        wait_for_delivery(
            &app,
            &at_publish.deliveries[0].id,
            pb::DeliveryStatus::Success,
            WAIT,
        )
        .await;
    }
);

db_test!(
    deliveries_of_a_deleted_endpoint_are_discarded,
    |app| async move {
        let receiver = TestReceiver::start().await;
        receiver.respond_sequence(vec![Behavior::Status(503)]);
        let endpoint = endpoint_at(&app, &receiver, |_| {}).await;
        let id = publish_one(&app, &endpoint.id).await;
        receiver.next_request(WAIT).await;
        wait_for_delivery(&app, &id, pb::DeliveryStatus::Retry, WAIT).await;
        app.endpoints()
            .await
            .delete_endpoint(pb::DeleteEndpointRequest {
                id: endpoint.id.clone(),
            })
            .await
            .unwrap();
        skip_backoff(&app).await;
        let discarded = wait_for_delivery(&app, &id, pb::DeliveryStatus::Discarded, WAIT).await;
        assert_eq!(discarded.description, "Endpoint was deleted");
        receiver.expect_no_request(Duration::from_millis(300)).await;
    }
);

db_test!(failed_attempts_record_what_went_wrong, |app| async move {
    // Connection refused: no response, no address.
    let refusing = TestReceiver::start_refusing();
    let mut endpoints = app.endpoints().await;
    let dead = endpoints
        .create_endpoint(pb::CreateEndpointRequest {
            endpoint: Some(pb::Endpoint {
                name: "dead".into(),
                url: format!("http://{refusing}/hook"),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let refused = publish_one(&app, &dead.id).await;
    let delivery = wait_for_delivery(&app, &refused, pb::DeliveryStatus::Retry, WAIT).await;
    assert!(
        delivery.description.starts_with("connection_refused"),
        "{}",
        delivery.description
    );
    let attempt = &attempts_of(&app, &refused).await[0];
    assert!(
        attempt.error.starts_with("connection_refused: "),
        "{}",
        attempt.error
    );
    assert_eq!(
        (attempt.http_status, attempt.responded_at.is_none()),
        (None, true)
    );
    assert_eq!(attempt.ip_address, "");

    // Timeout: connected, so the address is known, but no response.
    let hanging = TestReceiver::start().await;
    hanging.respond_with(Behavior::Hang);
    let slow = endpoint_at(&app, &hanging, |e| e.timeout_seconds = 1).await;
    let timed_out = publish_one(&app, &slow.id).await;
    hanging.next_request(WAIT).await;
    wait_for_delivery(&app, &timed_out, pb::DeliveryStatus::Retry, WAIT).await;
    let attempt = &attempts_of(&app, &timed_out).await[0];
    assert!(attempt.error.starts_with("timeout: "), "{}", attempt.error);
    assert_eq!(attempt.ip_address, "127.0.0.1");
    assert_eq!(
        (attempt.http_status, attempt.responded_at.is_none()),
        (None, true)
    );
    assert!(attempt.duration_ms >= 900, "{}", attempt.duration_ms);

    // A redirect is a failed attempt and is not followed.
    let redirecting = TestReceiver::start().await;
    redirecting.respond_with(Behavior::StatusWithHeaders(
        302,
        vec![("location".into(), redirecting.url("/elsewhere"))],
    ));
    let moved = endpoint_at(&app, &redirecting, |_| {}).await;
    let redirected = publish_one(&app, &moved.id).await;
    let delivery = wait_for_delivery(&app, &redirected, pb::DeliveryStatus::Retry, WAIT).await;
    assert_eq!(
        (delivery.last_http_status, delivery.description.as_str()),
        (302, "HTTP 302")
    );
    let attempt = &attempts_of(&app, &redirected).await[0];
    assert_eq!(attempt.http_status, Some(302));
    assert_eq!(attempt.error, "");
    assert!(attempt.responded_at.is_some());
    redirecting
        .expect_no_request(Duration::from_millis(300))
        .await;
    assert_eq!(redirecting.count(), 1, "the redirect was not followed");
});

db_test!(
    retry_after_on_503_and_429_lengthens_the_wait,
    |app| async move {
        let receiver = TestReceiver::start().await;
        let endpoint = endpoint_at(&app, &receiver, |_| {}).await;
        for status in [503, 429] {
            receiver.respond_sequence(vec![Behavior::StatusWithHeaders(
                status,
                vec![("retry-after".into(), "120".into())],
            )]);
            let id = publish_one(&app, &endpoint.id).await;
            let delivery = wait_for_delivery(&app, &id, pb::DeliveryStatus::Retry, WAIT).await;
            let wait = seconds_between(&delivery.updated_at, &delivery.next_attempt_at);
            assert!((119.9..=121.0).contains(&wait), "{status}: waits {wait} s");
        }
    }
);

db_test!(concurrent_publishes_share_commits, |app| async move {
    let receiver = TestReceiver::start().await;
    let endpoint = endpoint_at(&app, &receiver, |_| {}).await;
    let before = app.engine.stats();
    let mut calls = Vec::new();
    for n in 0..200 {
        let mut client = app.events().await;
        let request = to_endpoint(&endpoint.id, &format!(r#"{{"n":{n}}}"#));
        calls.push(tokio::spawn(
            async move { client.create_event(request).await },
        ));
    }
    for call in calls {
        call.await.unwrap().expect("published");
    }
    let after = app.engine.stats();
    let commits = after.commits - before.commits;
    assert_eq!(after.events - before.events, 200);
    // Each call waited for a durable commit, yet they shared them.
    assert!(commits < 200, "200 publishes took {commits} commits");
    eprintln!("200 concurrent publishes: {commits} commits");
    receiver.wait_for_count(200, WAIT).await;
});

db_test!(
    the_first_64_kib_of_a_response_body_are_kept,
    |app| async move {
        let receiver = TestReceiver::start().await;
        receiver.respond_with(Behavior::StatusWithBody(500, "x".repeat(100_000)));
        let endpoint = endpoint_at(&app, &receiver, |_| {}).await;
        let id = publish_one(&app, &endpoint.id).await;
        wait_for_delivery(&app, &id, pb::DeliveryStatus::Retry, WAIT).await;
        let attempt = &attempts_of(&app, &id).await[0];
        assert_eq!(attempt.response_body.len(), 64 * 1024);
        assert_eq!(attempt.http_status, Some(500));
    }
);

db_test!(
    deliveries_one_after_another_share_one_kept_alive_connection,
    |app| async move {
        let receiver = TestReceiver::start().await;
        deliver_one_at_a_time(&app, &receiver, 4).await;
        assert_eq!(receiver.connections(), 1);
    }
);

db_test!(
    a_receiver_that_closes_every_connection_still_gets_each_delivery_at_once,
    |app| async move {
        let receiver = TestReceiver::start().await;
        receiver.respond_with(Behavior::StatusWithHeaders(
            200,
            vec![("connection".into(), "close".into())],
        ));
        let endpoint = endpoint_at(&app, &receiver, |_| {}).await;
        // Back to back, so that some take a connection as it closes.
        let mut ids = Vec::new();
        for _ in 0..6 {
            ids.push(publish_one(&app, &endpoint.id).await);
        }
        succeed_at_first_attempt(&app, &ids).await;
        assert_eq!(receiver.connections(), 6);
    }
);

db_test!(
    a_connection_whose_response_was_cut_short_is_not_used_again,
    |app| async move {
        let receiver = TestReceiver::start().await;
        receiver.respond_sequence(vec![Behavior::StatusWithBody(200, "x".repeat(100_000))]);
        deliver_one_at_a_time(&app, &receiver, 2).await;
        assert_eq!(receiver.connections(), 2);
    }
);

db_test!(
    a_rate_limit_paces_a_burst_without_failing_anything,
    |app| async move {
        let receiver = TestReceiver::start().await;
        let endpoint = endpoint_at(&app, &receiver, |e| {
            e.rate_limit = Some(pb::RateLimit {
                count: 10,
                period_seconds: 1,
            });
        })
        .await;
        let published = app
            .events()
            .await
            .batch_create_events(pb::BatchCreateEventsRequest {
                events: (0..100)
                    .map(|n| to_endpoint(&endpoint.id, &format!(r#"{{"n":{n}}}"#)))
                    .collect(),
            })
            .await
            .unwrap()
            .into_inner();
        receiver.wait_for_count(100, Duration::from_secs(30)).await;
        let requests = receiver.requests();
        let first = requests.first().unwrap().received_at;
        let last = requests.last().unwrap().received_at;
        let spread = last.duration_since(first).as_secs_f64();
        // 10 at once, then 10 a second: the 100th about 9 s after the first.
        assert!(
            (8.0..=12.0).contains(&spread),
            "100 deliveries spread over {spread:.2} s"
        );
        // Never ahead of the pace: the n-th request no sooner than
        // (n - 10) / 10 s after the first (the bucket starts full).
        for (n, request) in requests.iter().enumerate() {
            let earliest = (n as f64 + 1.0 - 10.0).max(0.0) / 10.0;
            let at = request.received_at.duration_since(first).as_secs_f64();
            assert!(
                at >= earliest - 0.05,
                "request {} at {at:.3} s, allowed from {earliest:.3} s",
                n + 1
            );
        }
        for result in &published.results {
            let delivery = wait_for_delivery(
                &app,
                &result.deliveries[0].id,
                pb::DeliveryStatus::Success,
                WAIT,
            )
            .await;
            assert_eq!(delivery.attempts, 1, "waiting spent no attempt");
        }
    }
);
