//! WatchDeliveries: live status changes, filters, resuming, slow and
//! departed subscribers, several servers on one database.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hookd::grpc::{WatchConfig, pb};
use tonic::{Code, Streaming};

use crate::helpers::{
    Backend, TestApp, TestDb, publish_event, receiver_endpoint, spawn_app_watching,
    test_delivery_config, to_endpoint,
};
use crate::receiver::{Behavior, TestReceiver};
use crate::{backend_test, db_test};

const WAIT: Duration = Duration::from_secs(10);

async fn watch(
    app: &TestApp,
    request: pb::WatchDeliveriesRequest,
) -> Streaming<pb::DeliveryUpdate> {
    app.events()
        .await
        .watch_deliveries(request)
        .await
        .expect("watch opens")
        .into_inner()
}

/// The next update, or a panic after `WAIT`.
async fn next(stream: &mut Streaming<pb::DeliveryUpdate>) -> pb::DeliveryUpdate {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("an update within the wait")
        .expect("the stream stays healthy")
        .expect("the stream stays open")
}

/// Asserts nothing more arrives for a while.
async fn expect_quiet(stream: &mut Streaming<pb::DeliveryUpdate>) {
    if let Ok(more) = tokio::time::timeout(Duration::from_millis(400), stream.message()).await {
        panic!("expected no more updates, got {more:?}");
    }
}

async fn publish(app: &TestApp, endpoint: &str, event_type: &str) -> String {
    let mut event = to_endpoint(endpoint, r#"{"n":1}"#);
    event.event_type = event_type.into();
    publish_event(app, event).await
}

fn status(update: &pb::DeliveryUpdate) -> pb::DeliveryStatus {
    pb::DeliveryStatus::try_from(update.status).expect("a known status")
}

/// Reads until `done` holds for an update; returns every update read.
async fn read_until(
    stream: &mut Streaming<pb::DeliveryUpdate>,
    done: impl Fn(&pb::DeliveryUpdate) -> bool,
) -> Vec<pb::DeliveryUpdate> {
    let mut seen = Vec::new();
    loop {
        let update = next(stream).await;
        let last = done(&update);
        seen.push(update);
        if last {
            return seen;
        }
    }
}

db_test!(
    a_watcher_sees_every_status_of_a_delivery_that_fails_twice_then_succeeds,
    |app| async move {
        let receiver = TestReceiver::start().await;
        receiver.respond_sequence(vec![Behavior::Status(500), Behavior::Status(500)]);
        let endpoint = receiver_endpoint(&app, &receiver, "watch-secret", |_| {}).await;
        let mut stream = watch(&app, Default::default()).await;
        let id = publish(&app, &endpoint.id, "order.paid").await;

        let mut seen = Vec::new();
        for attempts in 1..=2 {
            seen.extend(
                read_until(&mut stream, |u| {
                    status(u) == pb::DeliveryStatus::Retry && u.attempts == attempts
                })
                .await,
            );
            app.clock.advance(Duration::from_secs(7 * 3600));
            app.engine.tick().await.expect("tick");
        }
        seen.extend(read_until(&mut stream, |u| status(u) == pb::DeliveryStatus::Success).await);
        expect_quiet(&mut stream).await;

        use pb::DeliveryStatus::{Processing, Retry, Success};
        let sequence: Vec<_> = seen
            .iter()
            .map(|u| {
                (
                    status(u),
                    u.attempts,
                    u.attempt.as_ref().map(|a| (a.number, a.http_status)),
                )
            })
            .collect();
        assert_eq!(
            sequence,
            vec![
                (Processing, 0, None),
                (Retry, 1, Some((1, Some(500)))),
                (Processing, 1, None),
                (Retry, 2, Some((2, Some(500)))),
                (Processing, 2, None),
                (Success, 3, Some((3, Some(200)))),
            ]
        );
        for update in &seen {
            assert_eq!(update.delivery_id, id);
            assert_eq!(update.endpoint_id, endpoint.id);
            assert_eq!(update.event_type, "order.paid");
            assert!(update.changed_at.is_some());
        }
        let retry = &seen[1];
        assert!(
            retry.next_attempt_at.is_some(),
            "a RETRY says when: {retry:?}"
        );
        let cursors: BTreeSet<&str> = seen.iter().map(|u| u.cursor.as_str()).collect();
        assert_eq!(cursors.len(), seen.len(), "every update has its own cursor");
    }
);

db_test!(filters_admit_only_what_was_asked_for, |app| async move {
    let healthy = TestReceiver::start().await;
    let failing = TestReceiver::start().await;
    failing.respond_with(Behavior::Status(500));
    let a = receiver_endpoint(&app, &healthy, "watch-secret", |_| {}).await;
    let b = receiver_endpoint(&app, &failing, "watch-secret", |_| {}).await;

    let mut of_a = watch(
        &app,
        pb::WatchDeliveriesRequest {
            endpoint_ids: vec![a.id.clone()],
            ..Default::default()
        },
    )
    .await;
    let mut retries = watch(
        &app,
        pb::WatchDeliveriesRequest {
            statuses: vec![pb::DeliveryStatus::Retry as i32],
            ..Default::default()
        },
    )
    .await;
    let mut users = watch(
        &app,
        pb::WatchDeliveriesRequest {
            event_types: vec!["user.created".into()],
            ..Default::default()
        },
    )
    .await;

    let to_a = publish(&app, &a.id, "order.paid").await;
    let to_b = publish(&app, &b.id, "order.paid").await;
    let user = publish(&app, &a.id, "user.created").await;
    let mut of_event = watch(
        &app,
        pb::WatchDeliveriesRequest {
            event_id: app
                .events()
                .await
                .get_delivery(pb::GetDeliveryRequest { id: user.clone() })
                .await
                .unwrap()
                .into_inner()
                .event_id,
            statuses: vec![pb::DeliveryStatus::Success as i32],
            cursor: "c0.0".into(),
            ..Default::default()
        },
    )
    .await;

    let mut got_a = BTreeMap::<String, Vec<pb::DeliveryStatus>>::new();
    while got_a.values().map(Vec::len).sum::<usize>() < 4 {
        let update = next(&mut of_a).await;
        got_a
            .entry(update.delivery_id.clone())
            .or_default()
            .push(status(&update));
    }
    use pb::DeliveryStatus::{Processing, Success};
    assert_eq!(got_a[&to_a], vec![Processing, Success]);
    assert_eq!(got_a[&user], vec![Processing, Success]);
    expect_quiet(&mut of_a).await;

    let retry = next(&mut retries).await;
    assert_eq!(
        (retry.delivery_id.as_str(), status(&retry)),
        (to_b.as_str(), pb::DeliveryStatus::Retry)
    );
    expect_quiet(&mut retries).await;

    let mut user_statuses = Vec::new();
    while user_statuses.len() < 2 {
        let update = next(&mut users).await;
        assert_eq!(update.delivery_id, user);
        user_statuses.push(status(&update));
    }
    expect_quiet(&mut users).await;

    // Replayed from the start of the log: one event's SUCCESS, nothing else.
    let update = next(&mut of_event).await;
    assert_eq!(
        (update.delivery_id.as_str(), status(&update)),
        (user.as_str(), Success)
    );
    expect_quiet(&mut of_event).await;
});

db_test!(
    a_watcher_that_resumes_from_its_cursor_misses_nothing_and_sees_nothing_twice,
    |app| async move {
        let receiver = TestReceiver::start().await;
        let endpoint = receiver_endpoint(&app, &receiver, "watch-secret", |_| {}).await;
        let mut first = watch(&app, Default::default()).await;
        let mut ids = Vec::new();
        for _ in 0..10 {
            ids.push(publish(&app, &endpoint.id, "order.paid").await);
        }
        let mut seen = Vec::new();
        for _ in 0..7 {
            seen.push(next(&mut first).await);
        }
        drop(first);
        for _ in 0..10 {
            ids.push(publish(&app, &endpoint.id, "order.paid").await);
        }
        receiver.wait_for_count(20, WAIT).await;

        let mut resumed = watch(
            &app,
            pb::WatchDeliveriesRequest {
                cursor: seen.last().unwrap().cursor.clone(),
                ..Default::default()
            },
        )
        .await;
        while seen.len() < 40 {
            seen.push(next(&mut resumed).await);
        }
        expect_quiet(&mut resumed).await;

        let pairs: BTreeSet<(String, i32)> = seen
            .iter()
            .map(|u| (u.delivery_id.clone(), u.status))
            .collect();
        assert_eq!(pairs.len(), 40, "no update came twice");
        let expected: BTreeSet<(String, i32)> = ids
            .iter()
            .flat_map(|id| {
                [pb::DeliveryStatus::Processing, pb::DeliveryStatus::Success]
                    .map(|s| (id.clone(), s as i32))
            })
            .collect();
        assert_eq!(
            pairs, expected,
            "every change of every delivery, none missing"
        );
    }
);

async fn slow_subscribers_are_cut_off_without_delaying_deliveries(backend: Backend) {
    let app = spawn_app_watching(
        TestDb::new(&backend),
        test_delivery_config(),
        false,
        WatchConfig {
            buffer: 4,
            page: 16,
            slow_after: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;
    let receiver = TestReceiver::start().await;
    let endpoint = receiver_endpoint(&app, &receiver, "watch-secret", |_| {}).await;
    // A client with small HTTP/2 windows, so what it leaves unread backs up
    // to the server quickly.
    let channel = tonic::transport::Endpoint::from_shared(app.uri())
        .unwrap()
        .initial_stream_window_size(Some(8 * 1024))
        .initial_connection_window_size(Some(8 * 1024))
        .connect()
        .await
        .unwrap();
    let key: tonic::metadata::MetadataValue<_> = format!("Bearer {}", app.api_key).parse().unwrap();
    let mut slow = pb::event_service_client::EventServiceClient::with_interceptor(
        channel,
        move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", key.clone());
            Ok(req)
        },
    );
    let mut stream = slow
        .watch_deliveries(pb::WatchDeliveriesRequest::default())
        .await
        .unwrap()
        .into_inner();

    const BATCH: usize = 300;
    const EVENTS: usize = 2 * BATCH;
    let batch = pb::BatchCreateEventsRequest {
        events: (0..BATCH)
            .map(|i| to_endpoint(&endpoint.id, &format!(r#"{{"n":{i}}}"#)))
            .collect(),
    };
    app.events()
        .await
        .batch_create_events(batch.clone())
        .await
        .unwrap();
    receiver.wait_for_count(BATCH, WAIT).await;
    // Nothing read, for longer than the server allows: the stream's task is
    // stuck with a full buffer, then gives up. Deliveries go on as fast.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let started = tokio::time::Instant::now();
    app.events().await.batch_create_events(batch).await.unwrap();
    receiver.wait_for_count(EVENTS, WAIT).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let mut seen = BTreeSet::new();
    let mut last_cursor = String::new();
    let cut_off = loop {
        match tokio::time::timeout(WAIT, stream.message())
            .await
            .unwrap_or_else(|_| panic!("hang after {}", seen.len()))
        {
            Ok(Some(update)) => {
                assert!(seen.insert((update.delivery_id.clone(), update.status)));
                last_cursor = update.cursor;
            }
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(cut_off.code(), Code::ResourceExhausted, "{cut_off:?}");
    assert!(seen.len() < 2 * EVENTS, "it was cut off before the end");

    let mut resumed = watch(
        &app,
        pb::WatchDeliveriesRequest {
            cursor: last_cursor,
            ..Default::default()
        },
    )
    .await;
    while seen.len() < 2 * EVENTS {
        let update = next(&mut resumed).await;
        assert!(
            seen.insert((update.delivery_id.clone(), update.status)),
            "resuming repeats nothing: {update:?}"
        );
    }
    expect_quiet(&mut resumed).await;
}
backend_test!(
    slow_subscribers_are_cut_off,
    slow_subscribers_are_cut_off_without_delaying_deliveries
);

async fn streams_end_with_their_clients(backend: Backend) {
    let app = spawn_app_watching(
        TestDb::new(&backend),
        test_delivery_config(),
        false,
        WatchConfig {
            max_per_project: 2,
            ..Default::default()
        },
    )
    .await;
    let until_active = |n: usize| {
        let watches = app.watches.clone();
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            while watches.active() != n {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{} open, expected {n}",
                    watches.active()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };

    let first = watch(&app, Default::default()).await;
    let _second = watch(&app, Default::default()).await;
    until_active(2).await;
    let third = app
        .events()
        .await
        .watch_deliveries(pb::WatchDeliveriesRequest::default())
        .await
        .expect_err("a third stream is over the limit");
    assert_eq!(third.code(), Code::ResourceExhausted, "{third:?}");

    // A client that goes away ends its stream's task at once.
    drop(first);
    until_active(1).await;

    // So does the call's deadline.
    let mut request = tonic::Request::new(pb::WatchDeliveriesRequest::default());
    request.set_timeout(Duration::from_millis(300));
    let mut timed = app
        .events()
        .await
        .watch_deliveries(request)
        .await
        .unwrap()
        .into_inner();
    until_active(2).await;
    let ended = tokio::time::timeout(WAIT, timed.message())
        .await
        .expect("the deadline ends the stream")
        .expect_err("with a status");
    assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended:?}");
    until_active(1).await;
}
backend_test!(
    streams_end_with_client_deadlines_and_disconnects,
    streams_end_with_their_clients
);

db_test!(
    cursors_are_checked_and_expire_with_the_history,
    |app| async move {
        let mut events = app.events().await;
        for (cursor, field) in [("yesterday", "cursor"), ("c1", "cursor")] {
            let status = events
                .watch_deliveries(pb::WatchDeliveriesRequest {
                    cursor: cursor.into(),
                    ..Default::default()
                })
                .await
                .expect_err("refused");
            crate::helpers::assert_invalid_field(&status, field);
        }
        for (request, field) in [
            (
                pb::WatchDeliveriesRequest {
                    endpoint_ids: vec!["ep_x".into()],
                    ..Default::default()
                },
                "endpoint_ids[0]",
            ),
            (
                pb::WatchDeliveriesRequest {
                    event_types: vec!["a b".into()],
                    ..Default::default()
                },
                "event_types[0]",
            ),
            (
                pb::WatchDeliveriesRequest {
                    statuses: vec![42],
                    ..Default::default()
                },
                "statuses",
            ),
        ] {
            let status = events.watch_deliveries(request).await.expect_err("refused");
            crate::helpers::assert_invalid_field(&status, field);
        }

        let receiver = TestReceiver::start().await;
        let endpoint = receiver_endpoint(&app, &receiver, "watch-secret", |_| {}).await;
        let mut stream = watch(&app, Default::default()).await;
        publish(&app, &endpoint.id, "order.paid").await;
        let processing = next(&mut stream).await;
        let success = next(&mut stream).await;
        drop(stream);

        app.clock.advance(Duration::from_secs(2 * 3600));
        assert_eq!(app.engine.prune_changes().await.unwrap(), 2);
        let expired = events
            .watch_deliveries(pb::WatchDeliveriesRequest {
                cursor: processing.cursor,
                ..Default::default()
            })
            .await
            .expect_err("history after this cursor is gone");
        assert_eq!(expired.code(), Code::OutOfRange, "{expired:?}");
        // The newest cursor missed nothing that was pruned.
        let mut fine = watch(
            &app,
            pb::WatchDeliveriesRequest {
                cursor: success.cursor,
                ..Default::default()
            },
        )
        .await;
        expect_quiet(&mut fine).await;
    }
);

/// Several servers on one PostgreSQL database: a subscriber on one sees
/// what the others do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_changes_made_by_other_servers() {
    let Some(backend) = Backend::postgres() else {
        eprintln!("{} unset: skipped", crate::helpers::POSTGRES_URL_VAR);
        return;
    };
    let publisher = crate::helpers::spawn_app(backend).await;
    let watcher =
        crate::helpers::spawn_app_on(TestDb::shared_with(publisher.db()), test_delivery_config())
            .await;
    let receiver = TestReceiver::start().await;
    let endpoint = receiver_endpoint(&publisher, &receiver, "watch-secret", |_| {}).await;
    let mut stream = watcher
        .events_with(&publisher.api_key)
        .await
        .watch_deliveries(pb::WatchDeliveriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let id = publish(&publisher, &endpoint.id, "order.paid").await;
    let seen = read_until(&mut stream, |u| status(u) == pb::DeliveryStatus::Success).await;
    assert_eq!(
        seen.iter()
            .map(|u| (u.delivery_id.as_str(), status(u)))
            .collect::<Vec<_>>(),
        vec![
            (id.as_str(), pb::DeliveryStatus::Processing),
            (id.as_str(), pb::DeliveryStatus::Success)
        ]
    );
}
