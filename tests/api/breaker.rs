//! The circuit breaker: an endpoint that keeps failing becomes INACTIVE,
//! and a retried delivery that succeeds makes it ACTIVE again (via PENDING).

use std::time::Duration;

use hookd::delivery::DeliveryConfig;
use hookd::grpc::pb;

use crate::backend_test;
use crate::helpers::{
    Backend, TestApp, TestDb, receiver_endpoint, spawn_app_on, test_delivery_config, to_endpoint,
    wait_for_delivery,
};
use crate::receiver::{Behavior, TestReceiver};

const WAIT: Duration = Duration::from_secs(10);

async fn app(backend: Backend) -> TestApp {
    let config = DeliveryConfig {
        breaker_failures: 3,
        ..test_delivery_config()
    };
    spawn_app_on(TestDb::new(&backend), config).await
}

async fn publish(app: &TestApp, endpoint: &str) -> pb::Delivery {
    app.events()
        .await
        .create_event(to_endpoint(endpoint, "{}"))
        .await
        .expect("published")
        .into_inner()
        .deliveries
        .remove(0)
}

async fn endpoint_status(app: &TestApp, id: &str) -> pb::Endpoint {
    app.endpoints()
        .await
        .get_endpoint(pb::GetEndpointRequest { id: id.to_owned() })
        .await
        .unwrap()
        .into_inner()
}

async fn wait_for_endpoint(app: &TestApp, id: &str, status: pb::EndpointStatus) -> pb::Endpoint {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let endpoint = endpoint_status(app, id).await;
        if endpoint.status == status as i32 {
            return endpoint;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "endpoint never {status:?}: {endpoint:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Moves the clock past any backoff and runs the poller.
async fn next_turn(app: &TestApp) {
    app.clock.advance(Duration::from_secs(7 * 3600));
    app.engine.tick().await.unwrap();
}

async fn repeated_failures_deactivate_and_a_successful_retry_reactivates(backend: Backend) {
    let app = app(backend).await;
    let receiver = TestReceiver::start().await;
    receiver.respond_with(Behavior::Status(500));
    let endpoint = receiver_endpoint(&app, &receiver, "breaker-secret", |_| {}).await;
    let first = publish(&app, &endpoint.id).await;

    // Three failed attempts in a row: the breaker trips.
    for _ in 0..2 {
        receiver.next_request(WAIT).await;
        wait_for_delivery(&app, &first.id, pb::DeliveryStatus::Retry, WAIT).await;
        next_turn(&app).await;
    }
    receiver.next_request(WAIT).await;
    let inactive = wait_for_endpoint(&app, &endpoint.id, pb::EndpointStatus::Inactive).await;
    let micros = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .map(|t| t.seconds * 1_000_000 + i64::from(t.nanos / 1000))
    };
    assert!(
        micros(&inactive.status_changed_at) > micros(&endpoint.status_changed_at),
        "the change is stamped"
    );

    // New deliveries are discarded; the waiting one is discarded at its turn.
    let second = publish(&app, &endpoint.id).await;
    assert_eq!(second.status, pb::DeliveryStatus::Discarded as i32);
    assert_eq!(second.description, "Endpoint is inactive");
    next_turn(&app).await;
    let discarded = wait_for_delivery(&app, &first.id, pb::DeliveryStatus::Discarded, WAIT).await;
    assert_eq!(discarded.description, "Endpoint is inactive");
    receiver.expect_no_request(Duration::from_millis(300)).await;

    // By hand it cannot simply be set ACTIVE...
    let refused = app
        .endpoints()
        .await
        .update_endpoint(pb::UpdateEndpointRequest {
            endpoint: Some(pb::Endpoint {
                id: endpoint.id.clone(),
                status: pb::EndpointStatus::Active as i32,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["status".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);

    // ...but retrying a delivery makes it PENDING, and a success ACTIVE.
    receiver.respond_with(Behavior::Status(200));
    app.events()
        .await
        .retry_delivery(pb::RetryDeliveryRequest {
            id: first.id.clone(),
        })
        .await
        .unwrap();
    let seen = endpoint_status(&app, &endpoint.id).await.status;
    assert!(
        seen == pb::EndpointStatus::Pending as i32 || seen == pb::EndpointStatus::Active as i32,
        "PENDING until the retry succeeds: {seen}"
    );
    wait_for_delivery(&app, &first.id, pb::DeliveryStatus::Success, WAIT).await;
    wait_for_endpoint(&app, &endpoint.id, pb::EndpointStatus::Active).await;

    // Then what was discarded meanwhile can be batch-retried.
    let retried = app
        .events()
        .await
        .batch_retry_deliveries(pb::BatchRetryDeliveriesRequest {
            endpoint_id: endpoint.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.scheduled, 1);
    wait_for_delivery(&app, &second.id, pb::DeliveryStatus::Success, WAIT).await;
}

async fn gone_deactivates_at_once(backend: Backend) {
    let app = app(backend).await;
    let receiver = TestReceiver::start().await;
    receiver.respond_with(Behavior::Status(410));
    let endpoint = receiver_endpoint(&app, &receiver, "gone-secret", |_| {}).await;
    let delivery = publish(&app, &endpoint.id).await;
    receiver.next_request(WAIT).await;
    wait_for_endpoint(&app, &endpoint.id, pb::EndpointStatus::Inactive).await;

    // A retry makes it PENDING; its failure (even short of the threshold)
    // returns it to INACTIVE.
    next_turn(&app).await;
    wait_for_delivery(&app, &delivery.id, pb::DeliveryStatus::Discarded, WAIT).await;
    receiver.respond_with(Behavior::Status(500));
    app.events()
        .await
        .retry_delivery(pb::RetryDeliveryRequest {
            id: delivery.id.clone(),
        })
        .await
        .unwrap();
    receiver.next_request(WAIT).await;
    wait_for_delivery(&app, &delivery.id, pb::DeliveryStatus::Retry, WAIT).await;
    wait_for_endpoint(&app, &endpoint.id, pb::EndpointStatus::Inactive).await;
}

async fn a_success_resets_the_count(backend: Backend) {
    let app = app(backend).await;
    let receiver = TestReceiver::start().await;
    let endpoint = receiver_endpoint(&app, &receiver, "reset-secret", |_| {}).await;
    // fail, fail, succeed, fail, fail: never three in a row.
    for status in [500, 500, 200, 500, 500] {
        receiver.respond_sequence(vec![Behavior::Status(status)]);
        let delivery = publish(&app, &endpoint.id).await;
        receiver.next_request(WAIT).await;
        let expected = if status == 200 {
            pb::DeliveryStatus::Success
        } else {
            pb::DeliveryStatus::Retry
        };
        wait_for_delivery(&app, &delivery.id, expected, WAIT).await;
    }
    assert_eq!(
        endpoint_status(&app, &endpoint.id).await.status,
        pb::EndpointStatus::Active as i32
    );
}

backend_test!(
    repeated_failures_deactivate_and_a_successful_retry_reactivates,
    repeated_failures_deactivate_and_a_successful_retry_reactivates
);
backend_test!(gone_deactivates_at_once, gone_deactivates_at_once);
backend_test!(a_success_resets_the_count, a_success_resets_the_count);

async fn an_operator_can_activate_an_inactive_endpoint(backend: Backend) {
    let app = app(backend).await;
    let receiver = TestReceiver::start().await;
    receiver.respond_with(Behavior::Status(410));
    let endpoint = receiver_endpoint(&app, &receiver, "activate-secret", |_| {}).await;
    let activate = || async {
        app.endpoints()
            .await
            .activate_endpoint(pb::ActivateEndpointRequest {
                id: endpoint.id.clone(),
            })
            .await
    };
    let not_needed = activate().await.unwrap_err();
    assert_eq!(
        not_needed.code(),
        tonic::Code::FailedPrecondition,
        "already ACTIVE"
    );
    publish(&app, &endpoint.id).await;
    receiver.next_request(WAIT).await;
    wait_for_endpoint(&app, &endpoint.id, pb::EndpointStatus::Inactive).await;

    receiver.respond_with(Behavior::Status(200));
    let active = activate().await.unwrap().into_inner();
    assert_eq!(active.status, pb::EndpointStatus::Active as i32);
    let delivery = publish(&app, &endpoint.id).await;
    wait_for_delivery(&app, &delivery.id, pb::DeliveryStatus::Success, WAIT).await;
}

backend_test!(
    an_operator_can_activate_an_inactive_endpoint,
    an_operator_can_activate_an_inactive_endpoint
);

async fn automatic_status_changes_are_announced_at_the_alert_url(backend: Backend) {
    let app = app(backend).await;
    let receiver = TestReceiver::start().await;
    let alerts = TestReceiver::start().await;
    receiver.respond_with(Behavior::Status(410));
    let endpoint = receiver_endpoint(&app, &receiver, "alert-secret-1", |e| {
        e.alert_url = alerts.url("/alerts");
    })
    .await;
    assert_eq!(endpoint.alert_url, alerts.url("/alerts"));
    let delivery = publish(&app, &endpoint.id).await;
    receiver.next_request(WAIT).await;

    let notice = alerts.next_request(WAIT).await;
    assert_eq!(
        notice.header("x-hookd-event-type"),
        Some("hookd.endpoint.status_changed")
    );
    assert!(
        notice.header("x-convoy-signature").is_some(),
        "signed like a delivery"
    );
    let body: serde_json::Value = serde_json::from_slice(&notice.body).unwrap();
    assert_eq!(body["endpoint_id"], endpoint.id.as_str());
    assert_eq!(body["status"], "INACTIVE");
    assert_eq!(body["reason"], "the receiver answered 410 Gone");
    assert_eq!(body["last_error"], "HTTP 410");

    receiver.respond_with(Behavior::Status(200));
    app.clock.advance(Duration::from_secs(7 * 3600));
    app.engine.tick().await.unwrap();
    wait_for_delivery(&app, &delivery.id, pb::DeliveryStatus::Discarded, WAIT).await;
    app.events()
        .await
        .retry_delivery(pb::RetryDeliveryRequest {
            id: delivery.id.clone(),
        })
        .await
        .unwrap();
    let notice = alerts.next_request(WAIT).await;
    let body: serde_json::Value = serde_json::from_slice(&notice.body).unwrap();
    assert_eq!(body["status"], "ACTIVE");
    assert_eq!(body["reason"], "a retried delivery succeeded");
    assert_eq!(body["last_error"], "");
}

backend_test!(
    automatic_status_changes_are_announced_at_the_alert_url,
    automatic_status_changes_are_announced_at_the_alert_url
);

async fn a_project_can_have_its_own_threshold(backend: Backend) {
    // The server's threshold is the default 50; this project's is 2.
    let app = spawn_app_on(TestDb::new(&backend), test_delivery_config()).await;
    app.store
        .set_breaker_failures(
            &app.project_id,
            Some(2),
            hookd::domain::time::Timestamp::from_unix_micros(0),
        )
        .await
        .unwrap();
    let receiver = TestReceiver::start().await;
    receiver.respond_with(Behavior::Status(500));
    let endpoint = receiver_endpoint(&app, &receiver, "project-threshold", |_| {}).await;
    for _ in 0..2 {
        let delivery = publish(&app, &endpoint.id).await;
        receiver.next_request(WAIT).await;
        wait_for_delivery(&app, &delivery.id, pb::DeliveryStatus::Retry, WAIT).await;
    }
    wait_for_endpoint(&app, &endpoint.id, pb::EndpointStatus::Inactive).await;
}

backend_test!(
    a_project_can_have_its_own_threshold,
    a_project_can_have_its_own_threshold
);
