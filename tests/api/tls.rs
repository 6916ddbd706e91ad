//! Delivery over HTTPS: a receiver with a certificate from a private CA is
//! reached once that CA is trusted (`--trust-ca`), and refused otherwise.

use std::time::Duration;

use hookd::delivery::DeliveryConfig;
use hookd::grpc::pb;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::backend_test;
use crate::helpers::{
    Backend, TestApp, TestDb, attempts_of, publish_one, receiver_endpoint, spawn_app_on,
    test_delivery_config, wait_for_delivery,
};
use crate::receiver::{Behavior, TestReceiver};

const WAIT: Duration = Duration::from_secs(10);

/// A private CA and a leaf it signed for `localhost` and `127.0.0.1`.
struct TestPki {
    ca: CertificateDer<'static>,
    leaf: CertificateDer<'static>,
    leaf_key: PrivateKeyDer<'static>,
}

impl TestPki {
    fn new() -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "hookd test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).expect("CA self-signed");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().expect("leaf key");
        let mut leaf_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("leaf params");
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("leaf signed by the CA");
        Self {
            ca: ca.der().clone(),
            leaf: leaf.der().clone(),
            leaf_key: PrivateKeyDer::try_from(leaf_key.serialize_der()).expect("PKCS#8 key"),
        }
    }

    /// hookd on a fresh database of `backend`, trusting the CA.
    async fn trusting_app(&self, backend: &Backend) -> TestApp {
        let config = DeliveryConfig {
            extra_roots: vec![self.ca.clone()],
            ..test_delivery_config()
        };
        spawn_app_on(TestDb::new(backend), config).await
    }

    /// A receiver presenting the leaf and the CA.
    async fn receiver(&self) -> TestReceiver {
        TestReceiver::start_tls(
            vec![self.leaf.clone(), self.ca.clone()],
            self.leaf_key.clone_key(),
        )
        .await
    }
}

async fn publish_to(app: &TestApp, url: String, payload: &str) -> String {
    let endpoint = app
        .endpoints()
        .await
        .create_endpoint(pb::CreateEndpointRequest {
            endpoint: Some(pb::Endpoint {
                name: "tls receiver".into(),
                url,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("endpoint created")
        .into_inner();
    let published = app
        .events()
        .await
        .create_event(pb::CreateEventRequest {
            event_type: "order.paid".into(),
            payload: payload.into(),
            target: Some(pb::create_event_request::Target::EndpointId(endpoint.id)),
            ..Default::default()
        })
        .await
        .expect("event published")
        .into_inner();
    assert_eq!(published.deliveries.len(), 1);
    published.deliveries[0].id.clone()
}

/// Trusting the test CA, hookd delivers over HTTPS and negotiates HTTP/2.
async fn trusted_ca(backend: Backend) {
    let pki = TestPki::new();
    let app = pki.trusting_app(&backend).await;
    let receiver = pki.receiver().await;
    let url = receiver.url("/hook");
    assert!(url.starts_with("https://localhost:"), "{url}");
    let payload = r#"{"order": 42, "over": "tls"}"#;
    let id = publish_to(&app, url, payload).await;

    // Waits on the delivery first: on failure its description says why.
    let delivery = wait_for_delivery(&app, &id, pb::DeliveryStatus::Success, WAIT).await;
    let request = receiver.next_request(WAIT).await;
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hook");
    assert_eq!(request.body_str(), payload);
    assert_eq!(request.version, "HTTP/2.0", "h2 negotiated by ALPN");
    assert_eq!(request.header("x-hookd-delivery-id"), Some(id.as_str()));

    assert_eq!(delivery.attempts, 1);
    assert_eq!(delivery.last_http_status, 200);
    let attempts = attempts_of(&app, &id).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].http_status, Some(200));
    assert_eq!(attempts[0].error, "");
    assert_eq!(attempts[0].ip_address, "127.0.0.1");

    // Later deliveries share the HTTP/2 connection.
    for n in 0..3 {
        let id = publish_to(&app, receiver.url("/hook"), &format!(r#"{{"n": {n}}}"#)).await;
        wait_for_delivery(&app, &id, pb::DeliveryStatus::Success, WAIT).await;
    }
    assert_eq!(receiver.connections(), 1);
}

/// Without the CA, the certificate is rejected: a TLS failure, retried.
async fn untrusted_ca(backend: Backend) {
    let pki = TestPki::new();
    let app = spawn_app_on(TestDb::new(&backend), test_delivery_config()).await;
    let receiver = pki.receiver().await;
    let id = publish_to(&app, receiver.url("/hook"), "{}").await;

    let delivery = wait_for_delivery(&app, &id, pb::DeliveryStatus::Retry, WAIT).await;
    assert_eq!(delivery.attempts, 1);
    assert!(
        delivery.description.starts_with("tls"),
        "{}",
        delivery.description
    );
    let attempts = attempts_of(&app, &id).await;
    assert_eq!(attempts.len(), 1);
    let attempt = &attempts[0];
    assert!(attempt.error.starts_with("tls: "), "{}", attempt.error);
    assert_eq!(
        (attempt.http_status, attempt.responded_at.is_none()),
        (None, true)
    );
    assert_eq!(receiver.count(), 0, "no request passed the handshake");
}

backend_test!(
    a_receiver_signed_by_a_trusted_ca_gets_the_event_over_h2,
    trusted_ca
);

backend_test!(an_untrusted_certificate_is_a_tls_failure, untrusted_ca);

/// A request on the shared HTTP/2 connection that gets no answer in time
/// retires the connection (it may have died silently on the way): the next
/// delivery opens a new one.
async fn unanswered_over_h2(backend: Backend) {
    let pki = TestPki::new();
    let app = pki.trusting_app(&backend).await;
    let receiver = pki.receiver().await;
    receiver.respond_sequence(vec![Behavior::Hang]);
    let endpoint = receiver_endpoint(&app, &receiver, "tls-secret-1", |e| {
        e.timeout_seconds = 1;
    })
    .await;
    let unanswered = publish_one(&app, &endpoint.id).await;
    let delivery = wait_for_delivery(&app, &unanswered, pb::DeliveryStatus::Retry, WAIT).await;
    assert!(delivery.description.starts_with("timeout"), "{delivery:?}");
    let answered = publish_one(&app, &endpoint.id).await;
    wait_for_delivery(&app, &answered, pb::DeliveryStatus::Success, WAIT).await;
    assert_eq!(receiver.requests()[1].version, "HTTP/2.0");
    assert_eq!(receiver.connections(), 2);
}

backend_test!(
    an_unanswered_request_retires_its_http2_connection,
    unanswered_over_h2
);
