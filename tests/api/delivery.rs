//! The delivery engine end to end: publish over gRPC, a real receiver on
//! loopback, deliveries and attempts read back over gRPC.

use std::time::Duration;

use hookd::grpc::pb;
use tonic::Code;

use crate::db_test;
use crate::helpers::{TestApp, wait_for_delivery};
use crate::receiver::{Behavior, TestReceiver};

const WAIT: Duration = Duration::from_secs(10);

async fn endpoint_at(
    app: &TestApp,
    receiver: &TestReceiver,
    f: impl FnOnce(&mut pb::Endpoint),
) -> pb::Endpoint {
    let mut ep = pb::Endpoint {
        name: "receiver".into(),
        url: receiver.url("/hook"),
        secret: "convoy-secret-1".into(),
        ..Default::default()
    };
    f(&mut ep);
    app.endpoints()
        .await
        .create_endpoint(pb::CreateEndpointRequest { endpoint: Some(ep) })
        .await
        .expect("endpoint created")
        .into_inner()
}

fn to_endpoint(id: &str, payload: &str) -> pb::CreateEventRequest {
    pb::CreateEventRequest {
        event_type: "order.paid".into(),
        payload: payload.into(),
        target: Some(pb::create_event_request::Target::EndpointId(id.into())),
        ..Default::default()
    }
}

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

/// Seconds from `from` to `to`.
fn seconds_between(
    from: &Option<prost_types::Timestamp>,
    to: &Option<prost_types::Timestamp>,
) -> f64 {
    let secs = |t: &Option<prost_types::Timestamp>| {
        let t = t.as_ref().expect("timestamp set");
        t.seconds as f64 + f64::from(t.nanos) / 1e9
    };
    secs(to) - secs(from)
}

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
            })
            .await
            .unwrap()
            .into_inner()
            .attempts;
        assert_eq!(attempts.len(), 12);
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
