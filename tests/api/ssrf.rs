//! The SSRF guard: deliveries never reach non-public addresses unless
//! allowed, whether the URL names them or a name resolves to them.

use std::time::Duration;

use hookd::delivery::DeliveryConfig;
use hookd::domain::network::NetworkPolicy;
use hookd::grpc::pb;

use crate::backend_test;
use crate::helpers::{
    Backend, LOOPBACK, TestApp, TestDb, attempts_of, spawn_app_on, test_delivery_config,
    to_endpoint, wait_for_delivery,
};
use crate::receiver::TestReceiver;

const WAIT: Duration = Duration::from_secs(10);

async fn app_with(backend: Backend, network: NetworkPolicy) -> TestApp {
    spawn_app_on(
        TestDb::new(&backend),
        DeliveryConfig {
            network,
            ..test_delivery_config()
        },
    )
    .await
}

/// Publishes one event to `url` and returns the attempt's error.
async fn attempt_error(app: &TestApp, url: String) -> String {
    let endpoint = app
        .endpoints()
        .await
        .create_endpoint(pb::CreateEndpointRequest {
            endpoint: Some(pb::Endpoint {
                name: "guarded".into(),
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
        .create_event(to_endpoint(&endpoint.id, "{}"))
        .await
        .expect("published")
        .into_inner();
    let id = &published.deliveries[0].id;
    let delivery = wait_for_delivery(app, id, pb::DeliveryStatus::Retry, WAIT).await;
    assert!(
        delivery.description.starts_with("blocked"),
        "{}",
        delivery.description
    );
    let attempt = &attempts_of(app, id).await[0];
    assert_eq!(
        (attempt.http_status, attempt.ip_address.as_str()),
        (None, ""),
        "no connection made"
    );
    attempt.error.clone()
}

async fn refuses_non_public_addresses(backend: Backend) {
    let app = app_with(backend, NetworkPolicy::default()).await;
    let receiver = TestReceiver::start().await;
    let port = receiver.addr().port();
    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://10.0.0.1/internal".to_owned(),
    ] {
        let error = attempt_error(&app, url.clone()).await;
        assert!(error.starts_with("blocked: "), "{url}: {error}");
        assert!(
            error.contains("--allow-network"),
            "{url}: the error says how to allow it: {error}"
        );
    }
    receiver.expect_no_request(Duration::from_millis(200)).await;
}

async fn the_block_list_wins_over_the_allow_list(backend: Backend) {
    let app = app_with(
        backend,
        NetworkPolicy::new(LOOPBACK, ["127.0.0.1/32"]).unwrap(),
    )
    .await;
    let receiver = TestReceiver::start().await;
    let error = attempt_error(&app, receiver.url("/hook")).await;
    assert!(error.contains("blocked network 127.0.0.1/32"), "{error}");
    receiver.expect_no_request(Duration::from_millis(200)).await;
}

backend_test!(refuses_non_public_addresses, refuses_non_public_addresses);

backend_test!(
    the_block_list_wins_over_the_allow_list,
    the_block_list_wins_over_the_allow_list
);
