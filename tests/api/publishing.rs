//! Publishing end to end: events over gRPC, a real receiver on loopback, the
//! signatures recomputed here with the `hmac` crate, fan-out, idempotency,
//! batches, validation and the read calls.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use hookd::grpc::pb;
use hookd::grpc::pb::create_event_request::Target;
use hookd::grpc::pb::event_service_client::EventServiceClient;
use sha2::{Sha256, Sha512};
use tonic::{Code, Request, Status};

use crate::db_test;
use crate::helpers::{
    EventClient, TestApp, assert_invalid_field, receiver_endpoint, seconds_between, to_endpoint,
    wait_for_delivery,
};
use crate::receiver::{Behavior, ReceivedRequest, TestReceiver};

const WAIT: Duration = Duration::from_secs(10);
/// How long "nothing else arrives" is watched for.
const QUIET: Duration = Duration::from_millis(500);
const SECRET: &str = "convoy-secret-1";

/// An endpoint at `receiver`, signed with `SECRET`.
async fn endpoint_at(
    app: &TestApp,
    receiver: &TestReceiver,
    f: impl FnOnce(&mut pb::Endpoint),
) -> pb::Endpoint {
    receiver_endpoint(app, receiver, SECRET, f).await
}
const WHSEC: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// Odd spacing, escapes and non-ASCII text: must arrive exactly like this.
const ODD_PAYLOAD: &str = "  {\"note\" :\t\"h\u{e9}llo w\u{f6}rld \u{2713} \u{1F600}\",\n  \"escaped\": \"\\u00e9\\n\\\"q\\\"\",   \"n\":[1 ,2.50, -0e0],\"empty\":{ } }\n";

fn to_target(target: Target) -> pb::CreateEventRequest {
    pb::CreateEventRequest {
        event_type: "order.paid".into(),
        payload: r#"{"order":1}"#.into(),
        target: Some(target),
        ..Default::default()
    }
}

/// The interceptor type of [`EventClient`].
type Authorize = Box<dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send>;

/// An EventService client sending `authorization` as given (or none).
async fn events_with(app: &TestApp, authorization: Option<String>) -> EventClient {
    let interceptor: Authorize = Box::new(move |mut req: Request<()>| {
        if let Some(value) = &authorization {
            req.metadata_mut()
                .insert("authorization", value.parse().expect("ascii metadata"));
        }
        Ok(req)
    });
    EventServiceClient::with_interceptor(app.channel().await, interceptor)
}

async fn publish(app: &TestApp, request: pb::CreateEventRequest) -> pb::CreateEventResponse {
    app.events()
        .await
        .create_event(request)
        .await
        .expect("event published")
        .into_inner()
}

async fn list_events(app: &TestApp, request: pb::ListEventsRequest) -> pb::ListEventsResponse {
    app.events()
        .await
        .list_events(request)
        .await
        .expect("events listed")
        .into_inner()
}

async fn list_deliveries(app: &TestApp, request: pb::ListDeliveriesRequest) -> Vec<pb::Delivery> {
    app.events()
        .await
        .list_deliveries(request)
        .await
        .expect("deliveries listed")
        .into_inner()
        .deliveries
}

/// No event and no delivery is stored in the app's project.
async fn assert_nothing_stored(app: &TestApp) {
    let events = list_events(app, pb::ListEventsRequest::default()).await;
    assert!(events.events.is_empty(), "stored: {:?}", events.events);
    let deliveries = list_deliveries(app, pb::ListDeliveriesRequest::default()).await;
    assert!(deliveries.is_empty(), "stored: {deliveries:?}");
}

fn hmac<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

#[track_caller]
fn assert_recent(unix: i64) {
    let now = unix_now();
    assert!(
        (unix - now).abs() <= 60,
        "signature timestamp {unix} is not within a minute of now ({now})"
    );
}

/// Splits `t=<unix>,v1=<sig>[,v1=<sig>…]` into the time and the signatures.
fn parse_convoy_advanced(header: &str) -> (i64, Vec<String>) {
    let mut parts = header.split(',');
    let t = parts
        .next()
        .and_then(|p| p.strip_prefix("t="))
        .unwrap_or_else(|| panic!("no t= first in {header:?}"));
    let signatures = parts
        .map(|p| {
            p.strip_prefix("v1=")
                .unwrap_or_else(|| panic!("unexpected part {p:?} in {header:?}"))
                .to_owned()
        })
        .collect();
    (
        t.parse()
            .unwrap_or_else(|e| panic!("t is not a number in {header:?}: {e}")),
        signatures,
    )
}

/// Asserts a default Convoy advanced signature (HMAC-SHA256, hex) over the
/// exact body received, made with `secret`.
#[track_caller]
fn assert_convoy_advanced_sha256_hex(request: &ReceivedRequest, secret: &str) {
    let header = request
        .header("x-convoy-signature")
        .expect("x-convoy-signature sent");
    let (t, signatures) = parse_convoy_advanced(header);
    assert_recent(t);
    let expected = hex(&hmac::<Hmac<Sha256>>(
        secret.as_bytes(),
        &[format!("{t},").as_bytes(), &request.body],
    ));
    assert_eq!(signatures, vec![expected], "header {header:?}");
}

fn sorted(ids: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut ids: Vec<String> = ids.into_iter().collect();
    ids.sort();
    ids
}

// ---------------------------------------------------------------------------
// 1. Signatures, recomputed here over the exact body received.
// ---------------------------------------------------------------------------

db_test!(
    convoy_advanced_default_signature_verifies_over_the_received_body,
    |app| async move {
        let receiver = TestReceiver::start().await;
        let endpoint = endpoint_at(&app, &receiver, |_| {}).await;
        publish(&app, to_endpoint(&endpoint.id, ODD_PAYLOAD)).await;

        let request = receiver.next_request(WAIT).await;
        assert_eq!(request.body_str(), ODD_PAYLOAD);
        assert_convoy_advanced_sha256_hex(&request, SECRET);
        // A different secret does not verify: the check above is not vacuous.
        let (t, signatures) = parse_convoy_advanced(request.header("x-convoy-signature").unwrap());
        let other = hex(&hmac::<Hmac<Sha256>>(
            b"convoy-secret-2",
            &[format!("{t},").as_bytes(), &request.body],
        ));
        assert_ne!(signatures[0], other);
        assert_eq!(request.header("webhook-signature"), None);
    }
);

db_test!(
    convoy_advanced_sha512_base64_signature_verifies,
    |app| async move {
        let receiver = TestReceiver::start().await;
        let endpoint = endpoint_at(&app, &receiver, |ep| {
            ep.signature_scheme = pb::SignatureScheme::ConvoyAdvanced as i32;
            ep.signature_hash = pb::SignatureHash::Sha512 as i32;
            ep.signature_encoding = pb::SignatureEncoding::Base64 as i32;
        })
        .await;
        publish(&app, to_endpoint(&endpoint.id, ODD_PAYLOAD)).await;

        let request = receiver.next_request(WAIT).await;
        assert_eq!(request.body_str(), ODD_PAYLOAD);
        let header = request
            .header("x-convoy-signature")
            .expect("x-convoy-signature sent");
        let (t, signatures) = parse_convoy_advanced(header);
        assert_recent(t);
        let mac = hmac::<Hmac<Sha512>>(
            SECRET.as_bytes(),
            &[format!("{t},").as_bytes(), &request.body],
        );
        assert_eq!(mac.len(), 64);
        assert_eq!(signatures, vec![STANDARD.encode(&mac)], "header {header:?}");
    }
);

db_test!(
    convoy_simple_signature_is_the_hmac_of_the_body,
    |app| async move {
        let receiver = TestReceiver::start().await;
        let endpoint = endpoint_at(&app, &receiver, |ep| {
            ep.signature_scheme = pb::SignatureScheme::ConvoySimple as i32;
        })
        .await;
        publish(&app, to_endpoint(&endpoint.id, ODD_PAYLOAD)).await;

        let request = receiver.next_request(WAIT).await;
        assert_eq!(request.body_str(), ODD_PAYLOAD);
        let expected = hex(&hmac::<Hmac<Sha256>>(SECRET.as_bytes(), &[&request.body]));
        assert_eq!(
            request.header("x-convoy-signature"),
            Some(expected.as_str())
        );
    }
);

db_test!(
    standard_webhooks_signature_verifies_with_the_decoded_whsec_key,
    |app| async move {
        let receiver = TestReceiver::start().await;
        let endpoint = endpoint_at(&app, &receiver, |ep| {
            ep.secret = WHSEC.into();
            ep.signature_scheme = pb::SignatureScheme::StandardWebhooks as i32;
        })
        .await;
        let published = publish(&app, to_endpoint(&endpoint.id, ODD_PAYLOAD)).await;
        let delivery_id = published.deliveries[0].id.clone();

        let request = receiver.next_request(WAIT).await;
        assert_eq!(request.body_str(), ODD_PAYLOAD);
        assert_eq!(request.header("webhook-id"), Some(delivery_id.as_str()));
        let timestamp = request
            .header("webhook-timestamp")
            .expect("webhook-timestamp sent");
        assert_recent(timestamp.parse().expect("webhook-timestamp is a number"));
        let key = STANDARD
            .decode(WHSEC.strip_prefix("whsec_").unwrap())
            .expect("base64 key");
        let mac = hmac::<Hmac<Sha256>>(
            &key,
            &[
                format!("{delivery_id}.{timestamp}.").as_bytes(),
                &request.body,
            ],
        );
        let expected = format!("v1,{}", STANDARD.encode(mac));
        assert_eq!(request.header("webhook-signature"), Some(expected.as_str()));
        assert_eq!(request.header("x-convoy-signature"), None);
    }
);

// ---------------------------------------------------------------------------
// 2. Bodies.
// ---------------------------------------------------------------------------

db_test!(
    json_bodies_are_the_payload_byte_for_byte,
    |app| async move {
        let receiver = TestReceiver::start().await;
        let endpoint = endpoint_at(&app, &receiver, |_| {}).await;
        let published = publish(&app, to_endpoint(&endpoint.id, ODD_PAYLOAD)).await;
        assert_eq!(
            published.event.as_ref().unwrap().payload,
            ODD_PAYLOAD,
            "the event keeps the payload verbatim"
        );

        let request = receiver.next_request(WAIT).await;
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hook");
        assert_eq!(request.body.as_ref(), ODD_PAYLOAD.as_bytes());
        assert_eq!(request.header("content-type"), Some("application/json"));
        let delivered = wait_for_delivery(
            &app,
            &published.deliveries[0].id,
            pb::DeliveryStatus::Success,
            WAIT,
        )
        .await;
        assert_eq!(delivered.attempts, 1);
    }
);

db_test!(
    form_endpoints_get_top_level_keys_as_form_fields,
    |app| async move {
        let receiver = TestReceiver::start().await;
        let endpoint = endpoint_at(&app, &receiver, |ep| {
            ep.content_type = "application/x-www-form-urlencoded".into();
        })
        .await;
        let payload = r#"{ "name" : "Zo\u00eb & co=1+2", "amount": 12.5, "nested": {"k": [1, 2], "s": "x y"},
            "flag": true, "nothing": null, "list": ["a", 3] }"#;
        publish(&app, to_endpoint(&endpoint.id, payload)).await;

        let request = receiver.next_request(WAIT).await;
        assert_eq!(
            request.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        let fields: Vec<(String, String)> =
            form_urlencoded::parse(&request.body).into_owned().collect();
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names.iter().copied().collect::<BTreeSet<_>>(),
            BTreeSet::from(["name", "amount", "nested", "flag", "nothing", "list"]),
            "one field per top-level key, each once: {fields:?}"
        );
        assert_eq!(names.len(), 6, "{fields:?}");
        let fields: BTreeMap<String, String> = fields.into_iter().collect();
        // Strings raw (the JSON escape decoded, no quotes)...
        assert_eq!(fields["name"], "Zo\u{eb} & co=1+2");
        // ...everything else as JSON text.
        let json = |field: &str| -> serde_json::Value {
            serde_json::from_str(&fields[field])
                .unwrap_or_else(|e| panic!("{field} = {:?} is not JSON: {e}", fields[field]))
        };
        assert_eq!(json("amount"), serde_json::json!(12.5));
        assert_eq!(json("nested"), serde_json::json!({"k": [1, 2], "s": "x y"}));
        assert_eq!(json("flag"), serde_json::json!(true));
        assert_eq!(json("nothing"), serde_json::Value::Null);
        assert_eq!(json("list"), serde_json::json!(["a", 3]));
        // The signature covers the form body actually sent.
        assert_convoy_advanced_sha256_hex(&request, SECRET);
    }
);

// ---------------------------------------------------------------------------
// 3. Headers, and a retry keeps the delivery id.
// ---------------------------------------------------------------------------

db_test!(
    headers_arrive_and_a_retry_keeps_the_delivery_id,
    |app| async move {
        let receiver = TestReceiver::start().await;
        receiver.respond_sequence(vec![Behavior::Status(500)]);
        let endpoint = endpoint_at(&app, &receiver, |ep| {
            ep.headers.insert("X-Tenant".into(), "acme-corp".into());
        })
        .await;
        let mut request = to_endpoint(&endpoint.id, r#"{"order":42}"#);
        request
            .custom_headers
            .insert("x-request-source".into(), "checkout v2".into());
        request.idempotency_key = "order-42-paid".into();
        let published = publish(&app, request).await;
        let event_id = published.event.as_ref().unwrap().id.clone();
        let delivery_id = published.deliveries[0].id.clone();

        let first = receiver.next_request(WAIT).await;
        let check = |r: &ReceivedRequest, attempt: &str| {
            assert_eq!(r.header("x-tenant"), Some("acme-corp"), "{attempt}");
            assert_eq!(r.header("x-request-source"), Some("checkout v2"));
            assert_eq!(r.header("x-hookd-delivery-id"), Some(delivery_id.as_str()));
            assert_eq!(r.header("x-hookd-event-id"), Some(event_id.as_str()));
            assert_eq!(r.header("x-hookd-event-type"), Some("order.paid"));
            assert_eq!(r.header("x-hookd-idempotency-key"), Some("order-42-paid"));
            assert_eq!(r.header("x-hookd-attempt"), Some(attempt));
            let user_agent = r.header("user-agent").expect("user-agent sent");
            assert!(user_agent.starts_with("hookd/"), "{user_agent}");
            assert_eq!(
                user_agent,
                concat!("hookd/", env!("CARGO_PKG_VERSION")),
                "the crate version"
            );
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert_eq!(r.body_str(), r#"{"order":42}"#);
        };
        check(&first, "1");

        let waiting = wait_for_delivery(&app, &delivery_id, pb::DeliveryStatus::Retry, WAIT).await;
        assert_eq!(waiting.attempts, 1);
        assert_eq!(waiting.last_http_status, 500);
        let delay = seconds_between(&waiting.updated_at, &waiting.next_attempt_at);
        assert!(delay > 0.0, "next attempt {delay} s after the failure");
        app.clock.advance(Duration::from_secs_f64(delay + 1.0));
        app.engine.tick().await.unwrap();

        let second = receiver.next_request(WAIT).await;
        check(&second, "2");
        let done = wait_for_delivery(&app, &delivery_id, pb::DeliveryStatus::Success, WAIT).await;
        assert_eq!(done.attempts, 2);
        assert_eq!(done.last_http_status, 200);
        receiver.expect_no_request(QUIET).await;
    }
);

db_test!(no_idempotency_key_header_without_a_key, |app| async move {
    let receiver = TestReceiver::start().await;
    let endpoint = endpoint_at(&app, &receiver, |_| {}).await;
    publish(&app, to_endpoint(&endpoint.id, "{}")).await;
    let request = receiver.next_request(WAIT).await;
    assert_eq!(request.header("x-hookd-idempotency-key"), None);
    assert_eq!(request.header("x-hookd-attempt"), Some("1"));
});

// ---------------------------------------------------------------------------
// 4. Fan-out.
// ---------------------------------------------------------------------------

db_test!(
    owner_fan_out_reaches_exactly_the_owners_endpoints_that_admit_the_type,
    |app| async move {
        let (all, some, other_type, other_owner) = (
            TestReceiver::start().await,
            TestReceiver::start().await,
            TestReceiver::start().await,
            TestReceiver::start().await,
        );
        let ep_all = endpoint_at(&app, &all, |ep| ep.owner_id = "acme".into()).await;
        let ep_some = endpoint_at(&app, &some, |ep| {
            ep.owner_id = "acme".into();
            ep.event_types = vec!["order.refunded".into(), "order.paid".into()];
        })
        .await;
        let ep_other_type = endpoint_at(&app, &other_type, |ep| {
            ep.owner_id = "acme".into();
            ep.event_types = vec!["other.type".into()];
        })
        .await;
        endpoint_at(&app, &other_owner, |ep| ep.owner_id = "globex".into()).await;

        let published = publish(&app, to_target(Target::OwnerId("acme".into()))).await;
        let expected = sorted([ep_all.id.clone(), ep_some.id.clone()]);
        assert!(!published.duplicate);
        assert_eq!(
            sorted(published.deliveries.iter().map(|d| d.endpoint_id.clone())),
            expected
        );
        let event = published.event.unwrap();
        assert_eq!(sorted(event.endpoint_ids.clone()), expected);
        assert!(
            published.deliveries.iter().all(|d| d.event_id == event.id),
            "{:?}",
            published.deliveries
        );

        for receiver in [&all, &some] {
            let request = receiver.next_request(WAIT).await;
            assert_eq!(request.header("x-hookd-event-id"), Some(event.id.as_str()));
        }
        for delivery in &published.deliveries {
            wait_for_delivery(&app, &delivery.id, pb::DeliveryStatus::Success, WAIT).await;
        }
        other_type.expect_no_request(QUIET).await;
        other_owner.expect_no_request(Duration::ZERO).await;
        all.expect_no_request(Duration::ZERO).await;
        some.expect_no_request(Duration::ZERO).await;

        let read = app
            .events()
            .await
            .get_event(pb::GetEventRequest {
                id: event.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(sorted(read.endpoint_ids), expected);
        let deliveries = list_deliveries(&app, pb::ListDeliveriesRequest::default()).await;
        assert_eq!(
            sorted(deliveries.into_iter().map(|d| d.endpoint_id)),
            expected,
            "no delivery for the filtered-out or other-owner endpoints"
        );
        assert_ne!(ep_other_type.id, ep_all.id);
    }
);

db_test!(
    broadcast_reaches_every_admitting_endpoint_of_the_project_only,
    |app| async move {
        let (all, some, other_type, no_owner, foreign) = (
            TestReceiver::start().await,
            TestReceiver::start().await,
            TestReceiver::start().await,
            TestReceiver::start().await,
            TestReceiver::start().await,
        );
        let ep_all = endpoint_at(&app, &all, |ep| ep.owner_id = "acme".into()).await;
        let ep_some = endpoint_at(&app, &some, |ep| {
            ep.owner_id = "globex".into();
            ep.event_types = vec!["order.paid".into()];
        })
        .await;
        endpoint_at(&app, &other_type, |ep| {
            ep.event_types = vec!["other.type".into()];
        })
        .await;
        let ep_no_owner = endpoint_at(&app, &no_owner, |_| {}).await;
        let (_, other_key) = app.other_project().await;
        app.endpoints_with(Some(format!("Bearer {other_key}")))
            .await
            .create_endpoint(pb::CreateEndpointRequest {
                endpoint: Some(pb::Endpoint {
                    name: "foreign".into(),
                    url: foreign.url("/hook"),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("foreign endpoint created");

        let published = publish(&app, to_target(Target::Broadcast(true))).await;
        let expected = sorted([ep_all.id, ep_some.id, ep_no_owner.id]);
        assert_eq!(
            sorted(published.deliveries.iter().map(|d| d.endpoint_id.clone())),
            expected
        );
        assert_eq!(
            sorted(published.event.as_ref().unwrap().endpoint_ids.clone()),
            expected
        );
        for receiver in [&all, &some, &no_owner] {
            receiver.next_request(WAIT).await;
        }
        for delivery in &published.deliveries {
            wait_for_delivery(&app, &delivery.id, pb::DeliveryStatus::Success, WAIT).await;
        }
        other_type.expect_no_request(QUIET).await;
        foreign.expect_no_request(Duration::ZERO).await;
    }
);

// ---------------------------------------------------------------------------
// 5. Targets that do not exist.
// ---------------------------------------------------------------------------

db_test!(
    targets_that_do_not_exist_are_not_found_and_store_nothing,
    |app| async move {
        let foreign_receiver = TestReceiver::start().await;
        let (_, other_key) = app.other_project().await;
        let foreign = app
            .endpoints_with(Some(format!("Bearer {other_key}")))
            .await
            .create_endpoint(pb::CreateEndpointRequest {
                endpoint: Some(pb::Endpoint {
                    name: "foreign".into(),
                    url: foreign_receiver.url("/hook"),
                    owner_id: "globex".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("foreign endpoint created")
            .into_inner();
        // An endpoint of our own with another owner, so the project is not empty.
        let receiver = TestReceiver::start().await;
        endpoint_at(&app, &receiver, |ep| ep.owner_id = "acme".into()).await;

        for (what, target) in [
            (
                "unknown endpoint",
                Target::EndpointId("ep_0190a0b1-c2d3-7e4f-8a9b-0c1d2e3f4a5b".into()),
            ),
            ("another project's endpoint", Target::EndpointId(foreign.id)),
            ("owner without endpoints", Target::OwnerId("initech".into())),
            (
                "owner only in another project",
                Target::OwnerId("globex".into()),
            ),
        ] {
            let status = app
                .events()
                .await
                .create_event(to_target(target))
                .await
                .expect_err(what);
            assert_eq!(status.code(), Code::NotFound, "{what}: {status:?}");
        }
        assert_nothing_stored(&app).await;
        receiver.expect_no_request(QUIET).await;
        foreign_receiver.expect_no_request(Duration::ZERO).await;
    }
);

// ---------------------------------------------------------------------------
// 6. Idempotency.
// ---------------------------------------------------------------------------

db_test!(
    an_idempotency_key_publishes_once_per_project_within_the_window,
    |app| async move {
        let receiver = TestReceiver::start().await;
        let endpoint = endpoint_at(&app, &receiver, |_| {}).await;
        let request = pb::CreateEventRequest {
            idempotency_key: "order-42".into(),
            ..to_endpoint(&endpoint.id, r#"{"order":42}"#)
        };

        let first = publish(&app, request.clone()).await;
        assert!(!first.duplicate);
        assert_eq!(first.deliveries.len(), 1);
        let first_event = first.event.clone().unwrap();
        assert_eq!(first_event.idempotency_key, "order-42");
        receiver.next_request(WAIT).await;

        let second = publish(&app, request.clone()).await;
        assert!(second.duplicate, "{second:?}");
        let second_event = second.event.clone().unwrap();
        assert_eq!(second_event.id, first_event.id);
        assert_eq!(second_event.endpoint_ids, first_event.endpoint_ids);
        assert_eq!(
            sorted(second.deliveries.iter().map(|d| d.id.clone())),
            sorted(first.deliveries.iter().map(|d| d.id.clone())),
        );
        receiver.expect_no_request(QUIET).await;
        assert_eq!(receiver.count(), 1);
        let events = list_events(&app, pb::ListEventsRequest::default()).await;
        assert_eq!(events.events.len(), 1);
        assert_eq!(
            list_deliveries(&app, pb::ListDeliveriesRequest::default())
                .await
                .len(),
            1
        );

        // The same key in another project is its own.
        let foreign_receiver = TestReceiver::start().await;
        let (_, other_key) = app.other_project().await;
        let foreign = app
            .endpoints_with(Some(format!("Bearer {other_key}")))
            .await
            .create_endpoint(pb::CreateEndpointRequest {
                endpoint: Some(pb::Endpoint {
                    name: "foreign".into(),
                    url: foreign_receiver.url("/hook"),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let theirs = events_with(&app, Some(format!("Bearer {other_key}")))
            .await
            .create_event(pb::CreateEventRequest {
                idempotency_key: "order-42".into(),
                ..to_endpoint(&foreign.id, r#"{"order":42}"#)
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!theirs.duplicate);
        assert_ne!(theirs.event.as_ref().unwrap().id, first_event.id);
        let got = foreign_receiver.next_request(WAIT).await;
        assert_eq!(
            got.header("x-hookd-event-id"),
            Some(theirs.event.as_ref().unwrap().id.as_str())
        );
        receiver.expect_no_request(Duration::ZERO).await;

        // Past the 24 h window the key makes a new event.
        app.clock.advance(Duration::from_secs(25 * 3600));
        let later = publish(&app, request).await;
        assert!(!later.duplicate, "{later:?}");
        let later_event = later.event.unwrap();
        assert_ne!(later_event.id, first_event.id);
        assert_eq!(later.deliveries.len(), 1);
        assert_ne!(later.deliveries[0].id, first.deliveries[0].id);
        let delivered = receiver.next_request(WAIT).await;
        assert_eq!(
            delivered.header("x-hookd-event-id"),
            Some(later_event.id.as_str())
        );
        assert_eq!(
            list_events(&app, pb::ListEventsRequest::default())
                .await
                .events
                .len(),
            2
        );
    }
);

db_test!(
    concurrent_publishes_with_one_idempotency_key_make_one_event,
    |app| async move {
        let receiver = TestReceiver::start().await;
        let endpoint = endpoint_at(&app, &receiver, |_| {}).await;
        let request = pb::CreateEventRequest {
            idempotency_key: "race-1".into(),
            ..to_endpoint(&endpoint.id, r#"{"race":1}"#)
        };
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let mut client = app.events().await;
            let request = request.clone();
            tasks.spawn(async move { client.create_event(request).await });
        }
        let mut responses = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            responses.push(
                joined
                    .expect("task ran")
                    .expect("publish succeeds")
                    .into_inner(),
            );
        }
        let originals = responses.iter().filter(|r| !r.duplicate).count();
        assert_eq!(originals, 1, "{responses:?}");
        let event_ids: BTreeSet<&str> = responses
            .iter()
            .map(|r| r.event.as_ref().unwrap().id.as_str())
            .collect();
        assert_eq!(event_ids.len(), 1, "{responses:?}");
        receiver.next_request(WAIT).await;
        receiver.expect_no_request(QUIET).await;
        assert_eq!(
            list_events(&app, pb::ListEventsRequest::default())
                .await
                .events
                .len(),
            1
        );
    }
);

// ---------------------------------------------------------------------------
// 7. Batches.
// ---------------------------------------------------------------------------

db_test!(a_batch_publishes_every_event_in_order, |app| async move {
    let receiver = TestReceiver::start().await;
    let endpoint = endpoint_at(&app, &receiver, |ep| ep.owner_id = "acme".into()).await;
    let requests = vec![
        pb::CreateEventRequest {
            event_type: "order.created".into(),
            ..to_endpoint(&endpoint.id, r#"{"n":0}"#)
        },
        pb::CreateEventRequest {
            event_type: "order.paid".into(),
            payload: r#"{"n": 1}"#.into(),
            target: Some(Target::OwnerId("acme".into())),
            ..Default::default()
        },
        pb::CreateEventRequest {
            event_type: "order.shipped".into(),
            payload: r#"{"n":  2}"#.into(),
            target: Some(Target::Broadcast(true)),
            ..Default::default()
        },
    ];
    let results = app
        .events()
        .await
        .batch_create_events(pb::BatchCreateEventsRequest {
            events: requests.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results.len(), 3);
    for (request, result) in requests.iter().zip(&results) {
        let event = result.event.as_ref().unwrap();
        assert!(!result.duplicate);
        assert_eq!(event.event_type, request.event_type);
        assert_eq!(event.payload, request.payload);
        assert_eq!(event.endpoint_ids, vec![endpoint.id.clone()]);
        assert_eq!(result.deliveries.len(), 1);
        assert_eq!(result.deliveries[0].event_id, event.id);
    }
    let ids: BTreeSet<&str> = results
        .iter()
        .map(|r| r.event.as_ref().unwrap().id.as_str())
        .collect();
    assert_eq!(ids.len(), 3, "three distinct events");

    receiver.wait_for_count(3, WAIT).await;
    let bodies: BTreeSet<String> = receiver
        .requests()
        .iter()
        .map(|r| r.body_str().to_owned())
        .collect();
    assert_eq!(
        bodies,
        requests.iter().map(|r| r.payload.clone()).collect(),
        "each payload delivered byte for byte"
    );
    for result in &results {
        wait_for_delivery(
            &app,
            &result.deliveries[0].id,
            pb::DeliveryStatus::Success,
            WAIT,
        )
        .await;
    }
    receiver.expect_no_request(QUIET).await;
});

db_test!(an_invalid_or_empty_batch_stores_nothing, |app| async move {
    let receiver = TestReceiver::start().await;
    let endpoint = endpoint_at(&app, &receiver, |_| {}).await;
    let mut client = app.events().await;

    let bad_json = client
        .batch_create_events(pb::BatchCreateEventsRequest {
            events: vec![
                to_endpoint(&endpoint.id, r#"{"n":0}"#),
                to_endpoint(&endpoint.id, r#"{"n":"#),
                to_endpoint(&endpoint.id, r#"{"n":2}"#),
            ],
        })
        .await
        .unwrap_err();
    assert_invalid_field(&bad_json, "events[1].payload");

    let empty = client
        .batch_create_events(pb::BatchCreateEventsRequest { events: vec![] })
        .await
        .unwrap_err();
    assert_invalid_field(&empty, "events");

    // A missing target late in the batch also stops the whole batch.
    let missing = client
        .batch_create_events(pb::BatchCreateEventsRequest {
            events: vec![
                to_endpoint(&endpoint.id, r#"{"n":0}"#),
                to_endpoint(&endpoint.id, r#"{"n":1}"#),
                to_endpoint("ep_0190a0b1-c2d3-7e4f-8a9b-0c1d2e3f4a5b", "{}"),
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    assert!(
        missing.message().contains("events[2]"),
        "names the event: {missing:?}"
    );

    assert_nothing_stored(&app).await;
    receiver.expect_no_request(QUIET).await;
});

// ---------------------------------------------------------------------------
// 8. CreateEvent validation.
// ---------------------------------------------------------------------------

db_test!(
    invalid_events_name_the_field_and_store_nothing,
    |app| async move {
        let receiver = TestReceiver::start().await;
        let endpoint = endpoint_at(&app, &receiver, |_| {}).await;
        let valid = || to_endpoint(&endpoint.id, r#"{"ok":true}"#);
        let with = |f: &dyn Fn(&mut pb::CreateEventRequest)| {
            let mut request = valid();
            f(&mut request);
            request
        };
        let header = |name: &str| {
            let mut request = valid();
            request.custom_headers.insert(name.into(), "x".into());
            request
        };
        let over_limit = format!("\"{}\"", "a".repeat(1_048_575));
        assert_eq!(over_limit.len(), 1_048_577);

        let cases: Vec<(&str, &str, pb::CreateEventRequest)> = vec![
            (
                "type with a space",
                "event_type",
                with(&|r| r.event_type = "order paid".into()),
            ),
            ("empty type", "event_type", with(&|r| r.event_type.clear())),
            (
                "129-character type",
                "event_type",
                with(&|r| r.event_type = "t".repeat(129)),
            ),
            (
                "payload not JSON",
                "payload",
                with(&|r| r.payload = "{\"a\":".into()),
            ),
            ("empty payload", "payload", with(&|r| r.payload.clear())),
            (
                "blank payload",
                "payload",
                with(&|r| r.payload = " \n ".into()),
            ),
            (
                "payload over 1 MiB",
                "payload",
                with(&|r| r.payload = over_limit.clone()),
            ),
            ("no target", "target", with(&|r| r.target = None)),
            (
                "broadcast false",
                "broadcast",
                with(&|r| r.target = Some(Target::Broadcast(false))),
            ),
            (
                "malformed endpoint id",
                "endpoint_id",
                with(&|r| r.target = Some(Target::EndpointId("endpoint-1".into()))),
            ),
            (
                "empty endpoint id",
                "endpoint_id",
                with(&|r| r.target = Some(Target::EndpointId(String::new()))),
            ),
            (
                "empty owner id",
                "owner_id",
                with(&|r| r.target = Some(Target::OwnerId(String::new()))),
            ),
            (
                "Content-Type header",
                "custom_headers",
                header("Content-Type"),
            ),
            (
                "X-Hookd-Foo header",
                "custom_headers",
                header("X-Hookd-Foo"),
            ),
            (
                "signature header",
                "custom_headers",
                header("X-Convoy-Signature"),
            ),
            (
                "idempotency key with a space",
                "idempotency_key",
                with(&|r| r.idempotency_key = "order 42".into()),
            ),
        ];
        let mut client = app.events().await;
        for (what, field, request) in cases {
            let status = client.create_event(request).await.expect_err(what);
            assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
            assert_invalid_field(&status, field);
        }
        assert_nothing_stored(&app).await;
        receiver.expect_no_request(QUIET).await;

        // The limits themselves are fine: 128 characters and exactly 1 MiB.
        let at_limit = format!("\"{}\"", "a".repeat(1_048_574));
        assert_eq!(at_limit.len(), 1_048_576);
        let published = publish(
            &app,
            pb::CreateEventRequest {
                event_type: "t".repeat(128),
                ..to_endpoint(&endpoint.id, &at_limit)
            },
        )
        .await;
        let request = receiver.next_request(WAIT).await;
        assert_eq!(request.body.len(), 1_048_576);
        assert_eq!(request.body.as_ref(), at_limit.as_bytes());
        wait_for_delivery(
            &app,
            &published.deliveries[0].id,
            pb::DeliveryStatus::Success,
            WAIT,
        )
        .await;
    }
);

// ---------------------------------------------------------------------------
// 9. Reads.
// ---------------------------------------------------------------------------

db_test!(
    events_and_deliveries_read_back_with_pages_and_filters,
    |app| async move {
        let ok = TestReceiver::start().await;
        let failing = TestReceiver::start().await;
        // Retry in an hour: the delivery stays RETRY while the test reads.
        failing.respond_with(Behavior::StatusWithHeaders(
            503,
            vec![("retry-after".into(), "3600".into())],
        ));
        let ep_ok = endpoint_at(&app, &ok, |_| {}).await;
        let ep_failing = endpoint_at(&app, &failing, |_| {}).await;

        // (type, endpoint) of events 0..5, created in this order.
        let plan = [
            ("order.paid", &ep_ok.id),
            ("order.refunded", &ep_failing.id),
            ("order.paid", &ep_failing.id),
            ("order.refunded", &ep_ok.id),
            ("order.paid", &ep_ok.id),
        ];
        let mut events = Vec::new();
        let mut deliveries = Vec::new();
        for (i, (event_type, endpoint)) in plan.iter().enumerate() {
            let mut request = pb::CreateEventRequest {
                event_type: (*event_type).into(),
                ..to_endpoint(endpoint, &format!(r#"{{"i": {i}}}"#))
            };
            request
                .custom_headers
                .insert("x-sequence".into(), i.to_string());
            request.idempotency_key = format!("key-{i}");
            let published = publish(&app, request).await;
            events.push(published.event.unwrap());
            deliveries.push(published.deliveries[0].clone());
        }
        for (i, delivery) in deliveries.iter().enumerate() {
            let status = if *plan[i].1 == ep_ok.id {
                pb::DeliveryStatus::Success
            } else {
                pb::DeliveryStatus::Retry
            };
            wait_for_delivery(&app, &delivery.id, status, WAIT).await;
        }
        let ids = |events: &[pb::Event]| events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        let newest_first = |picked: &[usize]| {
            picked
                .iter()
                .rev()
                .map(|&i| events[i].id.clone())
                .collect::<Vec<_>>()
        };

        // GetEvent.
        let read = app
            .events()
            .await
            .get_event(pb::GetEventRequest {
                id: events[1].id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(read.id, events[1].id);
        assert_eq!(read.event_type, "order.refunded");
        assert_eq!(read.payload, r#"{"i": 1}"#);
        assert_eq!(read.endpoint_ids, vec![ep_failing.id.clone()]);
        assert_eq!(
            read.custom_headers,
            [("x-sequence".to_string(), "1".to_string())].into()
        );
        assert_eq!(read.idempotency_key, "key-1");
        assert_eq!(read.created_at, events[1].created_at);
        assert!(read.created_at.is_some());

        // ListEvents: newest first, two per page, no gaps or repeats.
        let mut client = app.events().await;
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let page = client
                .list_events(pb::ListEventsRequest {
                    page_size: 2,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            pages += 1;
            assert!(page.events.len() <= 2);
            seen.extend(ids(&page.events));
            if page.next_page_token.is_empty() {
                break;
            }
            assert!(pages < 10, "pagination does not end");
            token = page.next_page_token;
        }
        assert_eq!(seen, newest_first(&[0, 1, 2, 3, 4]));
        assert_eq!(pages, 3);

        // Filters.
        let listed = |request: pb::ListEventsRequest| {
            let app = &app;
            async move { ids(&list_events(app, request).await.events) }
        };
        assert_eq!(
            listed(pb::ListEventsRequest {
                event_type: "order.paid".into(),
                ..Default::default()
            })
            .await,
            newest_first(&[0, 2, 4])
        );
        assert_eq!(
            listed(pb::ListEventsRequest {
                endpoint_id: ep_failing.id.clone(),
                ..Default::default()
            })
            .await,
            newest_first(&[1, 2])
        );
        assert_eq!(
            listed(pb::ListEventsRequest {
                event_type: "order.paid".into(),
                endpoint_id: ep_ok.id.clone(),
                ..Default::default()
            })
            .await,
            newest_first(&[0, 4])
        );
        assert_eq!(
            listed(pb::ListEventsRequest {
                event_type: "order.unknown".into(),
                ..Default::default()
            })
            .await,
            Vec::<String>::new()
        );
        // Filtered pages too.
        let first_page = list_events(
            &app,
            pb::ListEventsRequest {
                page_size: 2,
                event_type: "order.paid".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(ids(&first_page.events), newest_first(&[2, 4]));
        let second_page = list_events(
            &app,
            pb::ListEventsRequest {
                page_size: 2,
                event_type: "order.paid".into(),
                page_token: first_page.next_page_token.clone(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(ids(&second_page.events), newest_first(&[0]));
        assert!(second_page.next_page_token.is_empty());

        // ListDeliveries.
        let delivery_ids = |picked: &[usize]| {
            picked
                .iter()
                .rev()
                .map(|&i| deliveries[i].id.clone())
                .collect::<Vec<_>>()
        };
        let listed = |request: pb::ListDeliveriesRequest| {
            let app = &app;
            async move {
                list_deliveries(app, request)
                    .await
                    .into_iter()
                    .map(|d| d.id)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            listed(pb::ListDeliveriesRequest::default()).await,
            delivery_ids(&[0, 1, 2, 3, 4])
        );
        let of_event = list_deliveries(
            &app,
            pb::ListDeliveriesRequest {
                event_id: events[3].id.clone(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(of_event.len(), 1);
        assert_eq!(of_event[0].id, deliveries[3].id);
        assert_eq!(of_event[0].event_id, events[3].id);
        assert_eq!(of_event[0].endpoint_id, ep_ok.id);
        assert_eq!(of_event[0].event_type, "order.refunded");
        assert_eq!(of_event[0].status, pb::DeliveryStatus::Success as i32);
        assert_eq!(
            listed(pb::ListDeliveriesRequest {
                endpoint_id: ep_ok.id.clone(),
                ..Default::default()
            })
            .await,
            delivery_ids(&[0, 3, 4])
        );
        assert_eq!(
            listed(pb::ListDeliveriesRequest {
                statuses: vec![pb::DeliveryStatus::Retry as i32],
                ..Default::default()
            })
            .await,
            delivery_ids(&[1, 2])
        );
        assert_eq!(
            listed(pb::ListDeliveriesRequest {
                statuses: vec![
                    pb::DeliveryStatus::Success as i32,
                    pb::DeliveryStatus::Retry as i32
                ],
                ..Default::default()
            })
            .await,
            delivery_ids(&[0, 1, 2, 3, 4])
        );
        assert_eq!(
            listed(pb::ListDeliveriesRequest {
                statuses: vec![pb::DeliveryStatus::Failure as i32],
                ..Default::default()
            })
            .await,
            Vec::<String>::new()
        );
        assert_eq!(
            listed(pb::ListDeliveriesRequest {
                endpoint_id: ep_failing.id.clone(),
                statuses: vec![pb::DeliveryStatus::Success as i32],
                ..Default::default()
            })
            .await,
            Vec::<String>::new()
        );
        assert_eq!(
            listed(pb::ListDeliveriesRequest {
                event_id: events[2].id.clone(),
                endpoint_id: ep_failing.id.clone(),
                statuses: vec![pb::DeliveryStatus::Retry as i32],
                ..Default::default()
            })
            .await,
            delivery_ids(&[2])
        );
    }
);

db_test!(
    another_projects_events_and_deliveries_are_not_found,
    |app| async move {
        let receiver = TestReceiver::start().await;
        let endpoint = endpoint_at(&app, &receiver, |_| {}).await;
        let published = publish(&app, to_endpoint(&endpoint.id, "{}")).await;
        let event_id = published.event.unwrap().id;
        let delivery_id = published.deliveries[0].id.clone();
        wait_for_delivery(&app, &delivery_id, pb::DeliveryStatus::Success, WAIT).await;

        let (_, other_key) = app.other_project().await;
        let mut theirs = events_with(&app, Some(format!("Bearer {other_key}"))).await;
        let get_event = theirs
            .get_event(pb::GetEventRequest {
                id: event_id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(get_event.code(), Code::NotFound, "{get_event:?}");
        let get_delivery = theirs
            .get_delivery(pb::GetDeliveryRequest {
                id: delivery_id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(get_delivery.code(), Code::NotFound, "{get_delivery:?}");
        let attempts = theirs
            .list_delivery_attempts(pb::ListDeliveryAttemptsRequest {
                delivery_id: delivery_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(attempts.code(), Code::NotFound, "{attempts:?}");
        let listed = theirs
            .list_events(pb::ListEventsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(listed.events.is_empty());
        let listed = theirs
            .list_deliveries(pb::ListDeliveriesRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(listed.deliveries.is_empty());

        // Exactly like ids that do not exist at all.
        let missing = theirs
            .get_event(pb::GetEventRequest {
                id: "evt_0190a0b1-c2d3-7e4f-8a9b-0c1d2e3f4a5b".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            (missing.code(), missing.message()),
            (get_event.code(), get_event.message())
        );
        // Still readable by its own project.
        app.events()
            .await
            .get_event(pb::GetEventRequest { id: event_id })
            .await
            .expect("own event readable");
    }
);

db_test!(
    event_calls_without_a_valid_key_are_unauthenticated,
    |app| async move {
        let receiver = TestReceiver::start().await;
        let endpoint = endpoint_at(&app, &receiver, |_| {}).await;
        let published = publish(&app, to_endpoint(&endpoint.id, "{}")).await;
        let event_id = published.event.unwrap().id;
        let delivery_id = published.deliveries[0].id.clone();
        receiver.next_request(WAIT).await;

        for authorization in [None, Some("Bearer hk_wrong".to_string())] {
            let mut client = events_with(&app, authorization.clone()).await;
            let results = [
                client
                    .create_event(to_endpoint(&endpoint.id, "{}"))
                    .await
                    .map(drop),
                client
                    .batch_create_events(pb::BatchCreateEventsRequest {
                        events: vec![to_endpoint(&endpoint.id, "{}")],
                    })
                    .await
                    .map(drop),
                client
                    .get_event(pb::GetEventRequest {
                        id: event_id.clone(),
                    })
                    .await
                    .map(drop),
                client
                    .list_events(pb::ListEventsRequest::default())
                    .await
                    .map(drop),
                client
                    .get_delivery(pb::GetDeliveryRequest {
                        id: delivery_id.clone(),
                    })
                    .await
                    .map(drop),
                client
                    .list_deliveries(pb::ListDeliveriesRequest::default())
                    .await
                    .map(drop),
                client
                    .list_delivery_attempts(pb::ListDeliveryAttemptsRequest {
                        delivery_id: delivery_id.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                client
                    .retry_delivery(pb::RetryDeliveryRequest {
                        id: delivery_id.clone(),
                    })
                    .await
                    .map(drop),
                client
                    .batch_retry_deliveries(pb::BatchRetryDeliveriesRequest::default())
                    .await
                    .map(drop),
            ];
            for (i, result) in results.into_iter().enumerate() {
                let status = result.expect_err("refused");
                assert_eq!(
                    status.code(),
                    Code::Unauthenticated,
                    "call {i} with {authorization:?}: {status:?}"
                );
            }
        }
        let events = list_events(&app, pb::ListEventsRequest::default()).await;
        assert_eq!(events.events.len(), 1, "nothing published without a key");
        receiver.expect_no_request(QUIET).await;
    }
);

// ---------------------------------------------------------------------------
// 10. Attempts.
// ---------------------------------------------------------------------------

db_test!(
    attempts_record_redacted_request_headers_and_the_response,
    |app| async move {
        let receiver = TestReceiver::start().await;
        receiver.respond_with(Behavior::StatusWithBody(200, "thanks".into()));
        let endpoint = endpoint_at(&app, &receiver, |ep| {
            ep.headers
                .insert("Authorization".into(), "Bearer receiver-token".into());
            ep.headers.insert("X-Tenant".into(), "acme-corp".into());
        })
        .await;
        let published = publish(&app, to_endpoint(&endpoint.id, ODD_PAYLOAD)).await;
        let event_id = published.event.unwrap().id;
        let delivery_id = published.deliveries[0].id.clone();

        let request = receiver.next_request(WAIT).await;
        // The receiver gets the real values...
        assert_eq!(
            request.header("authorization"),
            Some("Bearer receiver-token")
        );
        assert_convoy_advanced_sha256_hex(&request, SECRET);
        wait_for_delivery(&app, &delivery_id, pb::DeliveryStatus::Success, WAIT).await;

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
        let attempt = &attempts[0];
        assert_eq!(attempt.delivery_id, delivery_id);
        assert_eq!(attempt.number, 1);
        assert!(attempt.id.starts_with("att_"), "{}", attempt.id);
        assert_eq!(attempt.url, receiver.url("/hook"));
        assert_eq!(attempt.http_status, Some(200));
        assert!(attempt.requested_at.is_some());
        assert!(attempt.responded_at.is_some());
        assert_eq!(attempt.error, "");
        // ...the record only what is not a secret.
        let sent = &attempt.request_headers;
        let header = |name: &str| sent.get(name).map(String::as_str);
        assert_eq!(header("x-convoy-signature"), Some("[redacted]"), "{sent:?}");
        assert_eq!(header("authorization"), Some("[redacted]"), "{sent:?}");
        assert_eq!(header("x-hookd-event-id"), Some(event_id.as_str()));
        assert_eq!(header("x-hookd-delivery-id"), Some(delivery_id.as_str()));
        assert_eq!(header("x-hookd-event-type"), Some("order.paid"));
        assert_eq!(header("x-hookd-attempt"), Some("1"));
        assert_eq!(header("x-tenant"), Some("acme-corp"));
        assert_eq!(header("content-type"), Some("application/json"));
        assert!(
            header("user-agent").is_some_and(|ua| ua.starts_with("hookd/")),
            "{sent:?}"
        );
        assert!(
            !sent.values().any(|v| v.contains("receiver-token")),
            "{sent:?}"
        );
        assert_eq!(attempt.response_body, "thanks");
        assert_eq!(
            attempt
                .response_headers
                .get("content-length")
                .map(String::as_str),
            Some("6"),
            "{:?}",
            attempt.response_headers
        );
    }
);
