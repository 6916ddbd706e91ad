//! Zero-downtime secret rotation: both secrets sign until the old one
//! expires, on a controlled clock.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use hookd::grpc::pb;
use sha2::Sha256;
use tonic::Code;

use crate::db_test;
use crate::helpers::{TestApp, assert_invalid_field, receiver_endpoint, to_endpoint};
use crate::receiver::{ReceivedRequest, TestReceiver};

const WAIT: Duration = Duration::from_secs(10);

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `v1` values of a Convoy advanced signature, and its timestamp.
fn convoy_signatures(request: &ReceivedRequest) -> (String, Vec<String>) {
    let header = request.header("x-convoy-signature").expect("signed");
    let mut t = String::new();
    let mut v1 = Vec::new();
    for part in header.split(',') {
        if let Some(value) = part.strip_prefix("t=") {
            t = value.to_owned();
        } else if let Some(value) = part.strip_prefix("v1=") {
            v1.push(value.to_owned());
        }
    }
    (t, v1)
}

fn convoy_expected(secret: &str, t: &str, body: &[u8]) -> String {
    hex(&hmac_sha256(secret.as_bytes(), &[t.as_bytes(), b",", body]))
}

async fn rotate(
    app: &TestApp,
    id: &str,
    secret: &str,
    grace: Option<u32>,
) -> Result<pb::RotateEndpointSecretResponse, tonic::Status> {
    app.endpoints()
        .await
        .rotate_endpoint_secret(pb::RotateEndpointSecretRequest {
            id: id.to_owned(),
            secret: secret.to_owned(),
            expire_current_after_seconds: grace,
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn publish(app: &TestApp, endpoint: &str) {
    app.events()
        .await
        .create_event(to_endpoint(endpoint, r#"{"rotate":true}"#))
        .await
        .expect("published");
}

db_test!(
    old_and_new_secrets_both_sign_until_the_old_one_expires,
    |app| async move {
        let receiver = TestReceiver::start().await;
        let endpoint = receiver_endpoint(&app, &receiver, "old-secret-1", |_| {}).await;
        let rotated = rotate(&app, &endpoint.id, "new-secret-2", Some(3600))
            .await
            .unwrap();
        assert_eq!(rotated.secret, "", "a supplied secret is not echoed");

        publish(&app, &endpoint.id).await;
        let request = receiver.next_request(WAIT).await;
        let (t, v1) = convoy_signatures(&request);
        assert_eq!(
            v1,
            vec![
                convoy_expected("new-secret-2", &t, &request.body),
                convoy_expected("old-secret-1", &t, &request.body),
            ],
            "one signature per valid secret, newest first"
        );

        // One second before the expiry both still sign; at it, only the new one.
        app.clock.advance(Duration::from_secs(3599));
        publish(&app, &endpoint.id).await;
        let request = receiver.next_request(WAIT).await;
        assert_eq!(convoy_signatures(&request).1.len(), 2);
        app.clock.advance(Duration::from_secs(2));
        publish(&app, &endpoint.id).await;
        let request = receiver.next_request(WAIT).await;
        let (t, v1) = convoy_signatures(&request);
        assert_eq!(v1, vec![convoy_expected("new-secret-2", &t, &request.body)]);
    }
);

db_test!(
    standard_webhooks_lists_both_signatures_and_simple_signs_with_the_newest,
    |app| async move {
        let receiver = TestReceiver::start().await;
        let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let standard = receiver_endpoint(&app, &receiver, old, |e| {
            e.signature_scheme = pb::SignatureScheme::StandardWebhooks as i32;
        })
        .await;
        let rotated = rotate(&app, &standard.id, "", None).await.unwrap();
        let new = rotated.secret.clone();
        assert!(new.starts_with("whsec_"), "generated and shown once: {new}");
        publish(&app, &standard.id).await;
        let request = receiver.next_request(WAIT).await;
        let id = request.header("webhook-id").unwrap();
        let ts = request.header("webhook-timestamp").unwrap();
        let sign = |secret: &str| {
            let key = STANDARD
                .decode(secret.strip_prefix("whsec_").unwrap())
                .unwrap();
            format!(
                "v1,{}",
                STANDARD.encode(hmac_sha256(
                    &key,
                    &[id.as_bytes(), b".", ts.as_bytes(), b".", &request.body]
                ))
            )
        };
        assert_eq!(
            request.header("webhook-signature").unwrap(),
            format!("{} {}", sign(&new), sign(old))
        );

        let simple = receiver_endpoint(&app, &receiver, "simple-old-1", |e| {
            e.signature_scheme = pb::SignatureScheme::ConvoySimple as i32;
        })
        .await;
        rotate(&app, &simple.id, "simple-new-2", Some(600))
            .await
            .unwrap();
        publish(&app, &simple.id).await;
        let request = receiver.next_request(WAIT).await;
        assert_eq!(
            request.header("x-convoy-signature").unwrap(),
            hex(&hmac_sha256(b"simple-new-2", &[&request.body])),
            "the simple scheme has room for one signature: the newest"
        );
    }
);

db_test!(
    expiring_now_leaves_only_the_new_secret_and_few_are_live_at_once,
    |app| async move {
        let receiver = TestReceiver::start().await;
        let endpoint = receiver_endpoint(&app, &receiver, "first-secret", |_| {}).await;
        rotate(&app, &endpoint.id, "second-secret", Some(3600))
            .await
            .unwrap();
        rotate(&app, &endpoint.id, "third-secret", Some(3600))
            .await
            .unwrap();
        let refused = rotate(&app, &endpoint.id, "fourth-secret", Some(3600))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");

        // Expiring the current ones now is always allowed, and signs with the new one only.
        let now = rotate(&app, &endpoint.id, "fourth-secret", Some(0))
            .await
            .unwrap();
        assert!(now.current_expires_at.is_some());
        publish(&app, &endpoint.id).await;
        let request = receiver.next_request(WAIT).await;
        let (t, v1) = convoy_signatures(&request);
        assert_eq!(
            v1,
            vec![convoy_expected("fourth-secret", &t, &request.body)]
        );
    }
);

db_test!(
    rotation_input_is_checked_and_projects_stay_apart,
    |app| async move {
        let receiver = TestReceiver::start().await;
        let endpoint = receiver_endpoint(&app, &receiver, "first-secret", |_| {}).await;
        let too_long = rotate(&app, &endpoint.id, "", Some(8 * 86_400))
            .await
            .unwrap_err();
        assert_invalid_field(&too_long, "expire_current_after_seconds");
        let bad = rotate(&app, &endpoint.id, "short", None).await.unwrap_err();
        assert_invalid_field(&bad, "secret");
        let malformed = rotate(&app, "nope", "", None).await.unwrap_err();
        assert_invalid_field(&malformed, "id");

        let (_, other_key) = app.other_project().await;
        let theirs = app
            .endpoints_with(Some(format!("Bearer {other_key}")))
            .await
            .rotate_endpoint_secret(pb::RotateEndpointSecretRequest {
                id: endpoint.id.clone(),
                secret: String::new(),
                expire_current_after_seconds: Some(0),
            })
            .await
            .unwrap_err();
        assert_eq!(theirs.code(), Code::NotFound);

        // Nothing above changed the signing secret.
        publish(&app, &endpoint.id).await;
        let request = receiver.next_request(WAIT).await;
        let (t, v1) = convoy_signatures(&request);
        assert_eq!(v1, vec![convoy_expected("first-secret", &t, &request.body)]);
    }
);
