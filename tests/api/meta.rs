//! Meta events (seed 003): project settings, recording, the live stream,
//! signed HTTP delivery with the seed's payload fields, viewing and resending.

use std::time::Duration;

use hmac::{KeyInit, Mac};
use hookd::domain::retry::RetryPolicy;
use hookd::grpc::pb;
use serde_json::Value;
use tonic::{Code, Streaming};

use crate::helpers::{
    Backend, TestApp, TestDb, assert_invalid_field, receiver_endpoint, spawn_app_on,
    test_delivery_config, to_endpoint,
};
use crate::receiver::{Behavior, ReceivedRequest, TestReceiver};
use crate::{backend_test, db_test};

const WAIT: Duration = Duration::from_secs(10);
const META_SECRET: &str = "meta-secret-123";

/// Turns meta events on, POSTed to `receiver` (if any) and signed with
/// `META_SECRET`.
async fn enable(app: &TestApp, receiver: Option<&TestReceiver>, types: &[&str]) {
    app.projects()
        .await
        .update_project(pb::UpdateProjectRequest {
            meta_events: Some(pb::MetaEventSettings {
                enabled: true,
                url: receiver.map(|r| r.url("/meta")).unwrap_or_default(),
                secret: META_SECRET.into(),
                event_types: types.iter().map(|t| (*t).to_owned()).collect(),
                ..Default::default()
            }),
            regenerate_secret: false,
            ..Default::default()
        })
        .await
        .expect("settings saved");
}

async fn watch(app: &TestApp, cursor: &str) -> Streaming<pb::MetaEvent> {
    app.meta_events()
        .await
        .watch_meta_events(pb::WatchMetaEventsRequest {
            cursor: cursor.into(),
            ..Default::default()
        })
        .await
        .expect("watch opens")
        .into_inner()
}

async fn next(stream: &mut Streaming<pb::MetaEvent>) -> pb::MetaEvent {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("a meta event within the wait")
        .expect("the stream stays healthy")
        .expect("the stream stays open")
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("JSON payload")
}

/// Asserts the request carries hex HMAC-SHA256 of its body under
/// `META_SECRET`.
#[track_caller]
fn assert_signed(request: &ReceivedRequest) {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(META_SECRET.as_bytes()).unwrap();
    mac.update(&request.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        request.header("x-convoy-signature"),
        Some(expected.as_str())
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
}

db_test!(
    the_secret_is_generated_when_missing_and_shown_once,
    |app| async move {
        let mut projects = app.projects().await;
        let before = projects
            .get_project(pb::GetProjectRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(before.id, app.project_id.to_string());
        let settings = before.meta_events.unwrap();
        assert!(!settings.enabled && !settings.has_secret);

        let on = pb::MetaEventSettings {
            enabled: true,
            url: "https://example.com/meta".into(),
            event_types: vec!["endpoint.created".into()],
            ..Default::default()
        };
        let first = projects
            .update_project(pb::UpdateProjectRequest {
                meta_events: Some(on.clone()),
                regenerate_secret: false,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let secret = first.meta_events_secret;
        assert!(secret.starts_with("whsec_"), "{secret}");
        let shown = first.project.unwrap().meta_events.unwrap();
        assert!(shown.enabled && shown.has_secret && shown.secret.is_empty());
        assert_eq!(shown.event_types, vec!["endpoint.created"]);

        let again = projects
            .update_project(pb::UpdateProjectRequest {
                meta_events: Some(on.clone()),
                regenerate_secret: false,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            again.meta_events_secret, "",
            "a kept secret is not shown again"
        );
        let fetched = projects
            .get_project(pb::GetProjectRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(fetched.meta_events.unwrap().secret, "");

        let regenerated = projects
            .update_project(pb::UpdateProjectRequest {
                meta_events: Some(on.clone()),
                regenerate_secret: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .meta_events_secret;
        assert!(regenerated.starts_with("whsec_") && regenerated != secret);

        for (settings, regenerate, field) in [
            (
                pb::MetaEventSettings {
                    url: "ftp://example.com".into(),
                    ..on.clone()
                },
                false,
                "meta_events.url",
            ),
            (
                pb::MetaEventSettings {
                    event_types: vec!["endpoint.renamed".into()],
                    ..on.clone()
                },
                false,
                "meta_events.event_types[0]",
            ),
            (
                pb::MetaEventSettings {
                    secret: "long-enough-secret".into(),
                    ..on.clone()
                },
                true,
                "meta_events.secret",
            ),
        ] {
            let status = projects
                .update_project(pb::UpdateProjectRequest {
                    meta_events: Some(settings),
                    regenerate_secret: regenerate,
                    ..Default::default()
                })
                .await
                .expect_err("refused");
            assert_invalid_field(&status, field);
        }
    }
);

db_test!(
    endpoint_meta_events_arrive_on_the_stream_and_signed_at_the_url,
    |app| async move {
        // Off: nothing is recorded.
        let quiet = app.create_endpoint("before").await;
        let meta = TestReceiver::start().await;
        enable(&app, Some(&meta), &[]).await;
        let mut stream = watch(&app, "").await;

        let mut endpoints = app.endpoints().await;
        let created = endpoints
            .create_endpoint(pb::CreateEndpointRequest {
                endpoint: Some(pb::Endpoint {
                    name: "orders".into(),
                    url: "https://example.com/orders".into(),
                    secret: "endpoint-secret-value".into(),
                    headers: [("x-api-key".to_owned(), "header-credential".to_owned())].into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        endpoints
            .update_endpoint(pb::UpdateEndpointRequest {
                endpoint: Some(pb::Endpoint {
                    id: created.id.clone(),
                    name: "orders v2".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()],
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        endpoints
            .delete_endpoint(pb::DeleteEndpointRequest {
                id: created.id.clone(),
            })
            .await
            .unwrap();

        let mut seen = Vec::new();
        for (kind, name) in [
            ("endpoint.created", "orders"),
            ("endpoint.updated", "orders v2"),
            ("endpoint.deleted", "orders v2"),
        ] {
            let event = next(&mut stream).await;
            assert_eq!(event.event_type, kind);
            let payload = json(&event.payload);
            assert_eq!(payload["event_type"], kind);
            assert_eq!(payload["data"]["uid"], created.id);
            assert_eq!(payload["data"]["name"], name);
            assert_eq!(payload["data"]["url"], "https://example.com/orders");
            assert!(
                !event.payload.contains("endpoint-secret-value"),
                "{}",
                event.payload
            );
            assert!(
                !event.payload.contains("header-credential"),
                "{}",
                event.payload
            );
            seen.push(event);
        }

        meta.wait_for_count(3, WAIT).await;
        let requests = meta.requests();
        for request in &requests {
            // Sent concurrently: matched by id, not by arrival order.
            let event = seen
                .iter()
                .find(|e| Some(e.id.as_str()) == request.header("x-hookd-meta-event-id"))
                .unwrap_or_else(|| panic!("a meta event not seen on the stream: {request:?}"));
            assert_eq!(request.path, "/meta");
            assert_eq!(
                request.body_str(),
                event.payload,
                "the body is the payload, byte for byte"
            );
            assert_signed(request);
        }
        let listed = app
            .meta_events()
            .await
            .list_meta_events(pb::ListMetaEventsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .meta_events;
        assert_eq!(
            listed.len(),
            3,
            "nothing about {} before they were on",
            quiet.id
        );
        let mut ids: Vec<&str> = listed.iter().map(|m| m.id.as_str()).collect();
        ids.reverse();
        assert_eq!(
            ids,
            seen.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            "newest first"
        );
        for event in &seen {
            let got = sent(&app, &event.id, pb::MetaEventStatus::Success).await;
            assert_eq!(got.attempts.len(), 1);
            assert_eq!(got.attempts[0].http_status, Some(200));
        }
    }
);

/// Polls GetMetaEvent until the meta event has `status`.
async fn sent(app: &TestApp, id: &str, status: pb::MetaEventStatus) -> pb::GetMetaEventResponse {
    let mut client = app.meta_events().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = client
            .get_meta_event(pb::GetMetaEventRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner();
        if got.meta_event.as_ref().unwrap().status == status as i32 {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {status:?}: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deliveries get one attempt, so every failure is final at once.
async fn one_attempt_app(backend: Backend) -> TestApp {
    let mut delivery = test_delivery_config();
    delivery.retry = RetryPolicy::new(
        1,
        Duration::from_secs(5),
        3.0,
        Duration::from_secs(3600),
        0.2,
        Duration::from_secs(3600),
    )
    .unwrap();
    spawn_app_on(TestDb::new(&backend), delivery).await
}

async fn delivery_meta_events_carry_the_fields_of_the_seed(backend: Backend) {
    let app = one_attempt_app(backend).await;
    let meta = TestReceiver::start().await;
    enable(
        &app,
        Some(&meta),
        &["eventdelivery.success", "eventdelivery.failed"],
    )
    .await;
    let mut stream = watch(&app, "").await;

    let ok = TestReceiver::start().await;
    let failing = TestReceiver::start().await;
    failing.respond_with(Behavior::Status(500));
    let hanging = TestReceiver::start().await;
    hanging.respond_with(Behavior::Hang);
    let refusing = TestReceiver::start_refusing();

    let to_ok = receiver_endpoint(&app, &ok, "endpoint-secret", |_| {}).await;
    let to_failing = receiver_endpoint(&app, &failing, "endpoint-secret", |_| {}).await;
    let to_hanging =
        receiver_endpoint(&app, &hanging, "endpoint-secret", |e| e.timeout_seconds = 1).await;
    let to_refusing = receiver_endpoint(&app, &ok, "endpoint-secret", |e| {
        e.url = format!("http://{refusing}/hook")
    })
    .await;

    // Ended early: discarded, because its endpoint is paused.
    let to_paused = receiver_endpoint(&app, &ok, "endpoint-secret", |_| {}).await;
    app.endpoints()
        .await
        .update_endpoint(pb::UpdateEndpointRequest {
            endpoint: Some(pb::Endpoint {
                id: to_paused.id.clone(),
                status: pb::EndpointStatus::Paused as i32,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["status".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap();

    let mut events = app.events().await;
    let mut delivery_of = std::collections::HashMap::new();
    for (name, endpoint) in [
        ("ok", &to_ok),
        ("500", &to_failing),
        ("timeout", &to_hanging),
        ("refused", &to_refusing),
        ("paused", &to_paused),
    ] {
        let published = events
            .create_event(to_endpoint(&endpoint.id, r#"{"n":1}"#))
            .await
            .unwrap()
            .into_inner();
        delivery_of.insert(published.deliveries[0].id.clone(), name);
    }

    let mut by_case = std::collections::HashMap::new();
    for _ in 0..5 {
        let event = next(&mut stream).await;
        let payload = json(&event.payload);
        let case = delivery_of[payload["data"]["uid"].as_str().unwrap()];
        by_case.insert(case, (event, payload));
    }
    let (paused, payload) = by_case.remove("paused").unwrap();
    assert_eq!(paused.event_type, "eventdelivery.failed");
    assert_eq!(payload["data"]["status"], "DISCARDED");
    assert_eq!(payload["data"]["description"], "Endpoint is paused");
    assert!(
        payload["data"].get("attempt").is_none(),
        "never attempted: {payload}"
    );
    for (case, (event, payload)) in &by_case {
        let data = &payload["data"];
        let attempt = data["attempt"]
            .as_object()
            .unwrap_or_else(|| panic!("{case}: {payload}"));
        assert!(data["acknowledged_at"].is_string(), "{case}: {payload}");
        assert!(attempt["requested_at"].is_string(), "{case}: {payload}");
        match *case {
            "ok" => {
                assert_eq!(event.event_type, "eventdelivery.success");
                assert_eq!(data["status"], "SUCCESS");
                assert_eq!(attempt["http_status"], 200);
                assert!(attempt["responded_at"].is_string());
                assert!(!attempt.contains_key("error"));
                assert_eq!(attempt["ip_address"], "127.0.0.1");
            }
            "500" => {
                assert_eq!(event.event_type, "eventdelivery.failed");
                assert_eq!(data["description"], "Retry limit exceeded");
                assert_eq!(attempt["http_status"], 500);
                assert!(attempt["responded_at"].is_string());
                assert!(!attempt.contains_key("error"), "{payload}");
                assert_eq!(attempt["ip_address"], "127.0.0.1");
            }
            "timeout" => {
                assert_eq!(event.event_type, "eventdelivery.failed");
                assert_eq!(data["description"], "Retry limit exceeded");
                assert!(
                    attempt["error"].as_str().unwrap().starts_with("timeout"),
                    "{payload}"
                );
                assert!(!attempt.contains_key("http_status"), "{payload}");
                assert!(!attempt.contains_key("responded_at"), "{payload}");
                assert_eq!(
                    attempt["ip_address"], "127.0.0.1",
                    "connected, then timed out"
                );
            }
            "refused" => {
                assert_eq!(event.event_type, "eventdelivery.failed");
                assert!(
                    attempt["error"]
                        .as_str()
                        .unwrap()
                        .starts_with("connection_refused"),
                    "{payload}"
                );
                assert!(!attempt.contains_key("http_status"), "{payload}");
                assert!(!attempt.contains_key("responded_at"), "{payload}");
                assert_eq!(attempt["ip_address"], "", "no connection, no address");
            }
            other => unreachable!("{other}"),
        }
    }
    meta.wait_for_count(5, WAIT).await;
    for request in meta.requests() {
        assert_signed(&request);
        let body = json(request.body_str());
        assert!(
            body["event_type"]
                .as_str()
                .unwrap()
                .starts_with("eventdelivery.")
        );
    }
}
backend_test!(
    delivery_meta_events,
    delivery_meta_events_carry_the_fields_of_the_seed
);

async fn failed_meta_events_are_retried_and_resent_by_hand(backend: Backend) {
    let app = one_attempt_app(backend).await;
    let mut meta_events = app.meta_events().await;

    // No URL: recorded, not sent; resending has nowhere to go.
    enable(&app, None, &["endpoint.created"]).await;
    app.create_endpoint("unsent").await;
    let unsent = meta_events
        .list_meta_events(pb::ListMetaEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .meta_events;
    assert_eq!(unsent.len(), 1);
    assert_eq!(unsent[0].status, pb::MetaEventStatus::Unsent as i32);
    let refused = meta_events
        .retry_meta_event(pb::RetryMetaEventRequest {
            id: unsent[0].id.clone(),
        })
        .await
        .expect_err("no URL");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");

    let meta = TestReceiver::start().await;
    meta.respond_sequence(vec![Behavior::Status(500)]);
    enable(&app, Some(&meta), &["endpoint.created"]).await;
    app.create_endpoint("failing first").await;
    let id = meta_events
        .list_meta_events(pb::ListMetaEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .meta_events[0]
        .id
        .clone();
    let failed = sent(&app, &id, pb::MetaEventStatus::Failure).await;
    assert_eq!(
        failed.meta_event.unwrap().description,
        "Retry limit exceeded"
    );
    assert_eq!(failed.attempts[0].http_status, Some(500));

    meta_events
        .retry_meta_event(pb::RetryMetaEventRequest { id: id.clone() })
        .await
        .unwrap();
    let resent = sent(&app, &id, pb::MetaEventStatus::Success).await;
    assert_eq!(
        resent
            .attempts
            .iter()
            .map(|a| a.http_status)
            .collect::<Vec<_>>(),
        vec![Some(500), Some(200)]
    );
    let requests = meta.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body, requests[1].body, "the same payload again");

    // The unsent one can go now that there is a URL.
    meta_events
        .retry_meta_event(pb::RetryMetaEventRequest {
            id: unsent[0].id.clone(),
        })
        .await
        .unwrap();
    sent(&app, &unsent[0].id, pb::MetaEventStatus::Success).await;

    let missing = meta_events
        .get_meta_event(pb::GetMetaEventRequest {
            id: format!("mev_{}", uuid::Uuid::now_v7()),
        })
        .await
        .expect_err("unknown");
    assert_eq!(missing.code(), Code::NotFound);
    let malformed = meta_events
        .get_meta_event(pb::GetMetaEventRequest { id: "evt_1".into() })
        .await
        .expect_err("malformed");
    assert_invalid_field(&malformed, "id");
}
backend_test!(
    meta_events_are_retried_and_resent,
    failed_meta_events_are_retried_and_resent_by_hand
);

db_test!(meta_event_watchers_resume_and_filter, |app| async move {
    enable(&app, None, &[]).await;
    let first = app.create_endpoint("one").await;
    let mut stream = watch(&app, "c0.0").await;
    let created = next(&mut stream).await;
    assert_eq!(json(&created.payload)["data"]["uid"], first.id);
    drop(stream);

    let second = app.create_endpoint("two").await;
    app.endpoints()
        .await
        .delete_endpoint(pb::DeleteEndpointRequest {
            id: second.id.clone(),
        })
        .await
        .unwrap();
    let mut resumed = app
        .meta_events()
        .await
        .watch_meta_events(pb::WatchMetaEventsRequest {
            cursor: created.cursor.clone(),
            event_types: vec!["endpoint.deleted".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let deleted = next(&mut resumed).await;
    assert_eq!(deleted.event_type, "endpoint.deleted");
    assert_eq!(json(&deleted.payload)["data"]["uid"], second.id);
    if let Ok(more) = tokio::time::timeout(Duration::from_millis(400), resumed.message()).await {
        panic!("expected nothing more, got {more:?}");
    }
    let status = app
        .meta_events()
        .await
        .watch_meta_events(pb::WatchMetaEventsRequest {
            event_types: vec!["endpoint.renamed".into()],
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_invalid_field(&status, "event_types[0]");
});

/// Two servers on one PostgreSQL database: a meta-event watcher on one sees
/// what is done through the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_event_watchers_see_other_servers() {
    let Some(backend) = Backend::postgres() else {
        eprintln!("{} unset: skipped", crate::helpers::POSTGRES_URL_VAR);
        return;
    };
    let one = crate::helpers::spawn_app(backend).await;
    let other = spawn_app_on(TestDb::shared_with(one.db()), test_delivery_config()).await;
    enable(&one, None, &[]).await;
    let mut stream = other
        .meta_events_with(&one.api_key)
        .await
        .watch_meta_events(pb::WatchMetaEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let created = one.create_endpoint("seen elsewhere").await;
    let event = next(&mut stream).await;
    assert_eq!(event.event_type, "endpoint.created");
    assert_eq!(json(&event.payload)["data"]["uid"], created.id);
}

db_test!(
    projects_set_their_own_retry_policy_and_signature_default,
    |app| async move {
        let mut projects = app.projects().await;
        let fresh = projects
            .get_project(pb::GetProjectRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(fresh.retry.is_none() && fresh.signature_defaults.is_none());

        let retry = pb::RetrySettings {
            max_attempts: 2,
            initial_delay_seconds: 1,
            max_delay_seconds: 10,
        };
        let updated = projects
            .update_project(pb::UpdateProjectRequest {
                retry: Some(retry),
                signature_defaults: Some(pb::SignatureDefaults {
                    scheme: pb::SignatureScheme::StandardWebhooks as i32,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .project
            .unwrap();
        assert_eq!(updated.retry, Some(retry));
        assert_eq!(
            updated.signature_defaults.unwrap().scheme,
            pb::SignatureScheme::StandardWebhooks as i32
        );
        assert!(
            !updated.meta_events.unwrap().enabled,
            "meta events untouched"
        );

        for (request, field) in [
            (pb::UpdateProjectRequest::default(), "meta_events"),
            (
                pb::UpdateProjectRequest {
                    retry: Some(pb::RetrySettings {
                        max_attempts: 0,
                        ..retry
                    }),
                    ..Default::default()
                },
                "retry.max_attempts",
            ),
            (
                pb::UpdateProjectRequest {
                    retry: Some(pb::RetrySettings {
                        initial_delay_seconds: 0,
                        ..retry
                    }),
                    ..Default::default()
                },
                "retry.initial_delay_seconds",
            ),
            (
                pb::UpdateProjectRequest {
                    retry: Some(pb::RetrySettings {
                        max_delay_seconds: 0,
                        ..retry
                    }),
                    ..Default::default()
                },
                "retry.max_delay_seconds",
            ),
            (
                pb::UpdateProjectRequest {
                    signature_defaults: Some(pb::SignatureDefaults {
                        scheme: pb::SignatureScheme::StandardWebhooks as i32,
                        hash: pb::SignatureHash::Sha512 as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                "signature_defaults.hash",
            ),
        ] {
            let status = projects.update_project(request).await.expect_err("refused");
            assert_invalid_field(&status, field);
        }
        let kept = projects
            .get_project(pb::GetProjectRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(kept.retry, Some(retry), "a refused update changes nothing");

        // New endpoints sign the project's way unless they say otherwise.
        let receiver = TestReceiver::start().await;
        receiver.respond_with(Behavior::Status(500));
        let defaulted = receiver_endpoint(&app, &receiver, "endpoint-secret", |_| {}).await;
        assert_eq!(
            defaulted.signature_scheme,
            pb::SignatureScheme::StandardWebhooks as i32
        );
        let explicit = receiver_endpoint(&app, &receiver, "endpoint-secret", |e| {
            e.signature_scheme = pb::SignatureScheme::ConvoySimple as i32
        })
        .await;
        assert_eq!(
            explicit.signature_scheme,
            pb::SignatureScheme::ConvoySimple as i32
        );

        // Two attempts, as the project says (the server's default is 12).
        let id = app
            .events()
            .await
            .create_event(to_endpoint(&defaulted.id, r#"{"n":1}"#))
            .await
            .unwrap()
            .into_inner()
            .deliveries[0]
            .id
            .clone();
        crate::helpers::wait_for_delivery(&app, &id, pb::DeliveryStatus::Retry, WAIT).await;
        app.clock.advance(Duration::from_secs(60));
        app.engine.tick().await.unwrap();
        let failed =
            crate::helpers::wait_for_delivery(&app, &id, pb::DeliveryStatus::Failure, WAIT).await;
        assert_eq!(
            (failed.attempts, failed.description.as_str()),
            (2, "Retry limit exceeded")
        );

        let cleared = projects
            .update_project(pb::UpdateProjectRequest {
                clear_retry: true,
                clear_signature_defaults: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .project
            .unwrap();
        assert!(cleared.retry.is_none() && cleared.signature_defaults.is_none());
    }
);
